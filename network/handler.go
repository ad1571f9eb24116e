package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

// TileSource is what Handler serves: a log's latest signed checkpoint and
// its tiles. *Log is one; a mirror of another node's log is another.
type TileSource interface {
	Checkpoint(ctx context.Context) ([]byte, error)
	// ReadTile returns ErrNotFound for a tile the log does not have.
	ReadTile(ctx context.Context, t tlog.Tile) ([]byte, error)
}

// Cache lifetimes. A full tile never changes; a partial one never changes
// either, but is soon superseded; the checkpoint changes on every append.
const (
	cacheFullTile    = "public, max-age=31536000, immutable"
	cachePartialTile = "public, max-age=60"
	cacheCheckpoint  = "no-cache"
)

// NewHandler serves src as a C2SP tlog-tiles log, rooted at "/": GET
// /checkpoint, /tile/<L>/<N>[.p/<W>] and /tile/entries/<N>[.p/<W>].
// Mount it under a prefix with http.StripPrefix. log may be nil.
func NewHandler(src TileSource, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &handler{src: src, log: log}
}

type handler struct {
	src TileSource
	log *slog.Logger
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := strings.TrimPrefix(r.URL.Path, "/")
	var data []byte
	var err error
	if p == "checkpoint" {
		data, err = h.src.Checkpoint(r.Context())
		w.Header().Set("Cache-Control", cacheCheckpoint)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	} else {
		t, perr := ParseTilePath(p)
		if perr != nil {
			http.NotFound(w, r)
			return
		}
		data, err = h.src.ReadTile(r.Context(), t)
		if t.W == tileWidth {
			w.Header().Set("Cache-Control", cacheFullTile)
		} else {
			w.Header().Set("Cache-Control", cachePartialTile)
		}
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	switch {
	case errors.Is(err, ErrNotFound):
		w.Header().Del("Cache-Control")
		http.NotFound(w, r)
		return
	case err != nil:
		h.log.WarnContext(r.Context(), "serving the log", "path", p, "err", err.Error())
		w.Header().Del("Cache-Control")
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Write(data)
}

// MirrorHandler serves the syncer's mirrors, rooted at "/": GET
// /<name>+<hash>/checkpoint and so on for the followed log by that key
// (see MirrorPath). Logs followed later are served as they come. A
// name alone, /<name>/..., as nodes served mirrors before, is served
// while one followed log's key has that name; while several have it, it
// answers 300 Multiple Choices, listing their paths: which is meant, the
// name cannot say, and serving either would shadow the other.
func (s *Syncer) MirrorHandler(log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The escaped path: a key's name may hold a '/'.
		seg, rest, ok := strings.Cut(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
		id, err := url.PathUnescape(seg)
		if !ok || err != nil {
			http.NotFound(w, r)
			return
		}
		var m *Mirror
		if strings.Contains(id, "+") { // no key's name holds one
			m = s.Mirror(id)
		} else if vs, first := s.mirrorsNamed(id); len(vs) == 1 {
			m = first
		} else if len(vs) > 1 {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusMultipleChoices)
			fmt.Fprintf(w, "%d followed logs' keys are named %q; each is mirrored at its key's name and hash, below this log:\n", len(vs), id)
			for _, v := range vs {
				fmt.Fprintln(w, MirrorPath(v))
			}
			return
		}
		if m == nil {
			http.NotFound(w, r)
			return
		}
		rest, err = url.PathUnescape(rest)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		r2 := new(http.Request)
		*r2 = *r
		u := *r.URL
		u.Path, u.RawPath = "/"+rest, ""
		r2.URL = &u
		NewHandler(m, log).ServeHTTP(w, r2)
	})
}
