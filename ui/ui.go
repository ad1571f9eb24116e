package ui

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"net/http"
)

//go:embed assets
var assets embed.FS

// Prefix is where the dashboard is served.
const Prefix = "/ui/"

// csp allows the page's own scripts, styles, images and API calls, and
// nothing else: no inline script or style (so injected markup cannot run
// even if some text were ever inserted as HTML), no framing, no plugins,
// no form posts or base URL elsewhere.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// page is one dashboard page: its path under Prefix, title and script.
type page struct {
	Path, Name, Title, Script string
}

// pages are the dashboard's pages, in the order of the navigation bar.
var pages = []page{
	{Path: "", Name: "overview", Title: "Overview", Script: "overview.js"},
	{Path: "library", Name: "library", Title: "Library", Script: "library.js"},
	{Path: "traces", Name: "traces", Title: "Traces", Script: "traces.js"},
	{Path: "network", Name: "network", Title: "Network", Script: "network.js"},
}

// Handler serves the dashboard's pages and assets at Prefix; requests must
// keep the full path (/ui/...). It panics if the embedded assets are
// broken, which is a build mistake.
func Handler() http.Handler {
	shell := template.Must(template.ParseFS(assets, "assets/shell.html"))
	static, err := fs.Sub(assets, "assets/static")
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	for _, p := range pages {
		var buf bytes.Buffer
		if err := shell.Execute(&buf, struct {
			Page  page
			Pages []page
		}{p, pages}); err != nil {
			panic(err)
		}
		body := buf.Bytes()
		pattern := "GET " + Prefix + p.Path
		if p.Path == "" {
			pattern += "{$}"
		}
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			_, _ = w.Write(body)
		})
	}
	mux.Handle("GET "+Prefix+"static/", http.StripPrefix(Prefix+"static/", http.FileServerFS(static)))
	return secure(mux)
}

// secure sets the headers every dashboard response carries.
func secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}
