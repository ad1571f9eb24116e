package ui

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Every page and asset is served with the strict headers; pages name
// their own script; unknown paths are 404s.
func TestUIServesPagesWithStrictHeaders(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	for _, tc := range []struct {
		path, contentType, body string
	}{
		{"/ui/", "text/html", `src="/ui/static/overview.js"`},
		{"/ui/library", "text/html", `src="/ui/static/library.js"`},
		{"/ui/traces", "text/html", `src="/ui/static/traces.js"`},
		{"/ui/network", "text/html", `src="/ui/static/network.js"`},
		{"/ui/static/app.js", "text/javascript", "sessionStorage"},
		{"/ui/static/style.css", "text/css", "--fg"},
	} {
		resp, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d; want 200", tc.path, resp.StatusCode)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.contentType) {
			t.Errorf("%s: Content-Type %q; want %s", tc.path, ct, tc.contentType)
		}
		if !strings.Contains(string(b), tc.body) {
			t.Errorf("%s: body lacks %q", tc.path, tc.body)
		}
		csp := resp.Header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "object-src 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %s", tc.path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe") {
			t.Errorf("%s: CSP %q allows unsafe sources", tc.path, csp)
		}
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options %q; want nosniff", tc.path, got)
		}
	}
	for _, path := range []string{"/ui/nope", "/ui/static/nope.js"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d; want 404", path, resp.StatusCode)
		}
	}
}

// The pages carry no inline script or style, which the CSP would block,
// and the scripts never insert markup.
func TestUIAssetsHaveNoInlineCodeOrMarkupInsertion(t *testing.T) {
	entries, err := assets.ReadDir("assets/static")
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"assets/shell.html"}
	for _, e := range entries {
		files = append(files, "assets/static/"+e.Name())
	}
	for _, f := range files {
		b, err := assets.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "style=", "<style", "onclick=", "javascript:"} {
			if strings.Contains(s, bad) {
				t.Errorf("%s contains %q", f, bad)
			}
		}
		if strings.HasSuffix(f, ".html") && strings.Contains(s, "<script>") {
			t.Errorf("%s has an inline script", f)
		}
	}
}
