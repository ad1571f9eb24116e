package main

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/network"
	"github.com/dso-proxy/dso/store"
	"golang.org/x/mod/sumdb/note"
)

// Serve publishes the shared domains of its store in its log, what is
// there at start and what is written later, and nothing else.
func TestServePublishesSharedDomains(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	st, err := store.OpenDir(ctx, data, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	put := func(domain, text string) {
		t.Helper()
		if _, _, err := st.PutExperience(ctx, store.Experience{Domain: domain, Text: text, Confidence: 0.7}); err != nil {
			t.Fatal(err)
		}
	}
	put("code.go", "Check the error from Close on written files.")
	put("code/rust", "Prefer borrowing to cloning.")
	put("codex", "Not shared: another domain.")
	put("research", "Not shared either.")
	retired := "Retired lessons stay home."
	put("code", retired)
	if _, err := st.UpdateExperience(ctx, store.ExperienceID("code", retired), store.Update{Status: ptr(store.StatusRetired)}); err != nil {
		t.Fatal(err)
	}

	keyFile := filepath.Join(t.TempDir(), "node.key")
	id, err := network.GenerateKey(keyFile, "nodeA")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listen = ln.Addr().String()
	cfg.Data = data
	cfg.Retrieval.Disabled = true
	cfg.Network = config.Network{ID: "hanzo", KeyFile: keyFile, Share: []string{"Code"}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	serveUntilStopped(t, ln, cfg, slog.New(slog.DiscardHandler))
	f := network.HTTPFetcher{Base: "http://" + ln.Addr().String() + "/log/hanzo"}
	v, _ := note.NewVerifier(id.VerifierKey)

	domains := waitForLog(t, f, v, 2)
	if want := []string{"code.go", "code/rust"}; !equalStrings(domains, want) {
		t.Errorf("published %v; want %v", domains, want)
	}
	put("code.py", "Use context managers for files.")
	put("research.ml", "Still not shared.")
	domains = waitForLog(t, f, v, 3)
	if want := []string{"code.go", "code.py", "code/rust"}; !equalStrings(domains, want) {
		t.Errorf("published %v; want %v", domains, want)
	}
}

func ptr[T any](v T) *T { return &v }

// waitForLog polls the log until it has n records, verifying each, and
// returns their domains, sorted.
func waitForLog(t *testing.T, f network.Fetcher, v note.Verifier, n int64) []string {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(wait)
	for {
		c, _, err := network.FetchCheckpoint(ctx, f, v, "nodeA/hanzo")
		if err != nil {
			t.Fatal(err)
		}
		if c.Size > n {
			t.Fatalf("log has %d records; want %d", c.Size, n)
		}
		if c.Size == n {
			entries, err := network.FetchEntries(ctx, f, c, 0, c.Size)
			if err != nil {
				t.Fatal(err)
			}
			var domains []string
			for i, e := range entries {
				if err := network.ProveInclusion(ctx, f, c, int64(i), e); err != nil {
					t.Fatal(err)
				}
				r, err := network.Open(e, note.VerifierList(v))
				if err != nil {
					t.Fatal(err)
				}
				domains = append(domains, r.Experience.Domain)
			}
			sort.Strings(domains)
			return domains
		}
		if time.Now().After(deadline) {
			t.Fatalf("log has %d records after %v; want %d", c.Size, wait, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
