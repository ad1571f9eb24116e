package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/network"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/store"
	"golang.org/x/mod/sumdb/note"
)

// embedBackend is a chat and embedding backend whose embedding model
// ("emb", the hash embedder's vectors) can be taken down.
type embedBackend struct {
	*httptest.Server
	down atomic.Bool
}

func newEmbedBackend(t *testing.T, h *providers.HashEmbedder) *embedBackend {
	b := &embedBackend{}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path != "/v1/embeddings" {
			io.WriteString(w, `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`)
			return
		}
		if b.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":{"message":"the embedding model is loading","type":"server_error"}}`)
			return
		}
		var req struct{ Input []string }
		json.Unmarshal(body, &req)
		vs, _ := h.Embed(r.Context(), req.Input)
		data := make([]map[string]any, len(vs))
		for i, v := range vs {
			data[i] = map[string]any{"object": "embedding", "index": i, "embedding": v}
		}
		json.NewEncoder(w).Encode(map[string]any{"object": "list", "model": "emb", "data": data})
	}))
	t.Cleanup(b.Close)
	return b
}

// rootOfKeys is a dishonest trusted node outside dso: its own log,
// vouching for n keys it minted, whose logs it serves as its mirrors;
// each of the n+1 logs holds the records records makes for its key's
// name.
func rootOfKeys(t *testing.T, name string, n int, records func(name string) []network.Record) *attacker {
	t.Helper()
	ctx := context.Background()
	root := newAttacker(t, name)
	mux := http.NewServeMux()
	var keys []string
	for i := range n {
		sub := newAttacker(t, name+"k"+string(rune('a'+i)))
		l := sub.log(t, records(sub.id.Signer.Name())...)
		keys = append(keys, sub.id.VerifierKey)
		v, err := note.NewVerifier(sub.id.VerifierKey)
		if err != nil {
			t.Fatal(err)
		}
		prefix := "/log/hanzo" + network.MirrorPath(v)
		mux.Handle(prefix+"/", http.StripPrefix(prefix, network.NewHandler(l, nil)))
	}
	l := root.log(t) // the vouch first: a record that waits holds back those after it
	if _, err := l.Vouch(ctx, "hanzo", keys, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, r := range records(name) {
		if _, err := l.Append(ctx, signed(t, root.id.Signer, r)); err != nil {
			t.Fatal(err)
		}
	}
	root.set(l)
	mux.Handle("/log/hanzo/", http.StripPrefix("/log/hanzo", network.NewHandler(root, nil)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	root.url = srv.URL
	return root
}

// While a node's embedding model is down, a lesson enters with the
// majority of the codes that three independent roots of trust published:
// a trusted root and the two keys it vouches for, all publishing one
// forged code, are one voice and admit nothing; with two honest roots
// the lesson enters with the honest code. Three roots that collude on a
// forged code do admit theirs, but once the model is back the node checks
// it against its own, re-embeds the lesson and says so, and the lesson
// surfaces for its question again.
func TestMajorityCodesAcrossRoots(t *testing.T) {
	if testing.Short() {
		t.Skip("starts dso processes")
	}
	ctx := context.Background()
	h := providers.NewHashEmbedder(256, 5)
	be := newEmbedBackend(t, h)
	be.down.Store(true)

	// The honest codes: another library of the node's space, with the
	// same model.
	st, err := store.OpenDir(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	honestLib, err := library.New(ctx, library.Config{Store: st, Space: library.Space{Name: "model:emb", Model: "emb",
		Embedder: library.EmbedFunc(h.Embed)}})
	if err != nil {
		t.Fatal(err)
	}
	defer honestLib.Close()
	withCode := func(text string, forge bool) network.Record {
		t.Helper()
		c, ok, err := honestLib.Code(ctx, "model:emb", text)
		if err != nil || !ok {
			t.Fatalf("code of %q: %v %v", text, ok, err)
		}
		if forge {
			for w := range c.Bits {
				c.Bits[w] = ^c.Bits[w]
			}
		}
		r := lesson("hanzo", text)
		r.Experience.Space = "model:emb"
		r.Experience.Code, _ = c.MarshalBinary()
		return r
	}
	stuffed := "Before retrying a failed HTTP request in Go, drain and close the response body so the connection is reused."
	colluded := "Give every outbound call a deadline with context.WithTimeout, and cancel it when the call returns."
	x := rootOfKeys(t, "nodeX", 2, func(string) []network.Record {
		return []network.Record{withCode(stuffed, true), withCode(colluded, true)}
	})
	a, b := newAttacker(t, "nodeA"), newAttacker(t, "nodeB")
	d := startNetNodeWith(t, "nodeD", be.URL, `{embedder: "model:emb", min_score: 0.05}`, "", x.peer(), a.peer(), b.peer())

	// X and its two keys: three authors, one root. Each waits, with one
	// root's code of the three a majority needs.
	pollUntil(t, 30*time.Second, "X and its keys each offer their code", func() bool {
		st, ok := networkOf(t, d)
		if !ok {
			return false
		}
		waiting := 0
		for _, l := range st.Networks[0].Logs {
			if l.Author != "nodeA" && l.Author != "nodeB" && strings.Contains(l.LastError, "codes from 1 of the 3 independent roots") {
				waiting++
			}
		}
		return waiting == 3
	})
	if hasText(t, d, stuffed) {
		t.Fatal("one root and the keys it vouches for admitted their forged code")
	}

	// Two honest roots publish the stuffed lesson's code; A and B collude
	// with X on the other's.
	a.set(a.log(t, withCode(stuffed, false), withCode(colluded, true)))
	b.set(b.log(t, withCode(stuffed, false), withCode(colluded, true)))
	pollUntil(t, 30*time.Second, "D admits both lessons by majority", func() bool { return hasText(t, d, stuffed) && hasText(t, d, colluded) })

	// The model comes back: the colluders' code is found out and replaced.
	be.down.Store(false)
	pollUntil(t, 30*time.Second, "D refutes the colluded code", func() bool {
		var st struct {
			Networks []struct {
				Refuted int64 `json:"majority_codes_refuted"`
			}
		}
		return getJSON(t, d.url+"/v1/network", &st) && len(st.Networks) == 1 && st.Networks[0].Refuted == 1
	})
	for _, q := range []struct{ question, want string }{
		{"My Go HTTP retry loop leaks connections; what should I do with the response body before retrying?", "drain and close"},
		{"How do I give an outbound call a deadline so it cannot hang forever?", "context.WithTimeout"},
	} {
		pollUntil(t, 30*time.Second, "D injects "+q.want, func() bool {
			hdr := chatHeaders(t, d, q.question)
			return strings.Contains(hdr.Get("X-DSO-Experiences"), store.ExperienceID("code.go", map[string]string{"drain and close": stuffed, "context.WithTimeout": colluded}[q.want]))
		})
	}
}

// chatHeaders sends question through n and returns the response headers.
func chatHeaders(t *testing.T, n netNode, question string) http.Header {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"model": "m", "messages": []map[string]string{{"role": "user", "content": question}}})
	resp, err := http.Post(n.url+"/v1/chat/completions", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.Header
}
