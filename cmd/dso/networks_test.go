package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/network"
	"golang.org/x/mod/sumdb/note"
)

// multiNode is a dso process of the several-networks test, with its key
// made before it starts.
type multiNode struct {
	netNode
	dir, keyFile, backend string
}

func newMultiNode(t *testing.T, name, backend string) *multiNode {
	dir := t.TempDir()
	keyFile, vkey := keygenNode(t, dir, name)
	return &multiNode{netNode: netNode{name: name, key: vkey}, dir: dir, keyFile: keyFile, backend: backend}
}

// netEntry is the YAML of one entry of networks.
func (m *multiNode) netEntry(id, share string, seed uint64, peers ...string) string {
	return fmt.Sprintf("  - {id: %s, key_file: %q, share: [%s], seed: %d, sync_interval: 100ms, peers: [%s]}\n",
		id, m.keyFile, share, seed, strings.Join(peers, ", "))
}

// start starts m in the networks given as entries.
func (m *multiNode) start(t *testing.T, entries ...string) {
	t.Helper()
	cfg := fmt.Sprintf("data: %q\nbackends: [{name: fake, type: openai, url: %q}]\nretrieval: {embedder: \"hash:256\", min_score: 0.05}\nnetworks:\n%s",
		filepath.Join(m.dir, "data"), m.backend+"/v1", strings.Join(entries, ""))
	m.config = filepath.Join(m.dir, "dso.yaml")
	if err := os.WriteFile(m.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	m.cmd, m.url = startDSO(t, "--config", m.config)
}

// ownLog is m's log of network id: the experiences in it (its vouches
// for its peers left out).
func (m *multiNode) ownLog(t *testing.T, id string) []network.Record {
	t.Helper()
	ctx := context.Background()
	f := network.HTTPFetcher{Base: m.url + "/log/" + id}
	v, err := note.NewVerifier(m.key)
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := network.FetchCheckpoint(ctx, f, v, m.name+"/"+id)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := network.FetchEntries(ctx, f, c, 0, c.Size)
	if err != nil {
		t.Fatal(err)
	}
	var rs []network.Record
	for _, e := range entries {
		r, err := network.Open(e, note.VerifierList(v))
		if err != nil {
			t.Fatal(err)
		}
		if r.Experience != nil {
			rs = append(rs, r)
		}
	}
	return rs
}

// askWith sends a chat question to m with X-DSO-Domain set (when not
// empty) and returns the body the backend got.
func askWith(t *testing.T, m *multiNode, be *recordingBackend, domain, question string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, m.url+"/v1/chat/completions", strings.NewReader(
		fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":%q}]}`, question)))
	req.Header.Set("Content-Type", "application/json")
	if domain != "" {
		req.Header.Set("X-DSO-Domain", domain)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("chat on %s: %s", m.name, resp.Status)
	}
	return be.last()
}

// A node in two networks, "code" and "research", shares domain code on
// the one and research on the other, with a peer in each that follows it
// and that it follows. Each peer gets only its network's experiences
// (not even those the node took from the other network); the node's
// library spans both, narrowed by X-DSO-Domain; GET /v1/network and the
// metrics show both networks; the research network's own lift seed keeps
// the node's codes out of its records; a stop closes both cleanly.
func TestNetworkSeveralNetworks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts dso processes")
	}
	be := &recordingBackend{}
	backend := httptest.NewServer(be)
	defer backend.Close()

	const researchSeed = 7 // the research network's lift; code's is the default
	m := newMultiNode(t, "nodeM", backend.URL)
	p1 := newMultiNode(t, "nodeP1", backend.URL) // in code
	p2 := newMultiNode(t, "nodeP2", backend.URL) // in research
	// The peers follow M, and M them: M is reached through a forwarder
	// that knows M's address once M is up.
	var mAddr atomic.Pointer[string]
	front := httptest.NewServer(forwarder(&mAddr))
	defer front.Close()
	p1.start(t, p1.netEntry("code", "code", 0, peerOf(front.URL, m.key)))
	// P2 shares code on the research network too: M takes it from there,
	// and must not sign it as its own on the code network.
	p2.start(t, p2.netEntry("research", "research, code", researchSeed, peerOf(front.URL, m.key)))
	m.start(t, m.netEntry("code", "code", 0, peerOf(p1.url, p1.key)),
		m.netEntry("research", "research", researchSeed, peerOf(p2.url, p2.key)))
	mAddr.Store(&m.url)

	mCode := "When a Go goroutine leaks, check that every channel send has a receiver or a select on ctx.Done."
	mResearch := "Report the confidence interval with every benchmark result, not only the mean."
	private := "The staging database password rotates every Monday."
	p1Code := "In Rust, prefer iterators over index loops; bounds checks are elided and the code reads better."
	p2Research := "Preregister the hypothesis and the analysis before collecting survey data."
	p2Code := "Python list comprehensions are faster than appending in a for loop."
	m.add(t, "code.go", mCode)
	m.add(t, "research.stats", mResearch)
	m.add(t, "ops.secrets", private)
	p1.add(t, "code.rust", p1Code)
	p2.add(t, "research.surveys", p2Research)
	p2.add(t, "code.python", p2Code)

	for _, w := range []struct {
		n    *multiNode
		text string
	}{{p1, mCode}, {p2, mResearch}, {m, p1Code}, {m, p2Research}, {m, p2Code}} {
		pollUntil(t, 60*time.Second, w.n.name+" admits "+w.text, func() bool { return hasText(t, w.n.netNode, w.text) })
	}
	// M's publisher has seen p2Code's change once a later code lesson is
	// published: the change log is read in order.
	mCode2 := "Close an http.Response body even when you do not read it."
	m.add(t, "code.go", mCode2)
	pollUntil(t, 60*time.Second, "P1 admits M's second code lesson", func() bool { return hasText(t, p1.netNode, mCode2) })

	codeLog, researchLog := m.ownLog(t, "code"), m.ownLog(t, "research")
	var codeTexts []string
	for _, r := range codeLog {
		codeTexts = append(codeTexts, r.Experience.Text)
		if len(r.Experience.Code) == 0 || r.Experience.Network != "code" {
			t.Errorf("M's code record %q: network %q, %d code bytes; want code, with its code", r.Experience.Text, r.Experience.Network, len(r.Experience.Code))
		}
	}
	if len(codeLog) != 2 {
		t.Errorf("M's code log holds %q; want only M's two code lessons", codeTexts)
	}
	if len(researchLog) != 1 || researchLog[0].Experience.Text != mResearch {
		t.Errorf("M's research log holds %d records; want only %q", len(researchLog), mResearch)
	} else if e := researchLog[0].Experience; len(e.Code) != 0 || e.Space != "" {
		t.Errorf("M's research record carries a %q code; its library's lift is not the research network's", e.Space)
	}
	for _, x := range []string{mResearch, p2Research, p2Code, private} {
		if hasText(t, p1.netNode, x) {
			t.Errorf("P1, in code only, holds %q", x)
		}
	}
	for _, x := range []string{mCode, mCode2, p1Code, private} {
		if hasText(t, p2.netNode, x) {
			t.Errorf("P2, in research only, holds %q", x)
		}
	}

	var st netStatus
	if !getJSON(t, m.url+"/v1/network", &st) || len(st.Networks) != 2 {
		t.Fatalf("M's /v1/network: %+v; want two networks", st)
	}
	for i, w := range []struct{ id, author string }{{"code", "nodeP1"}, {"research", "nodeP2"}} {
		n := st.Networks[i]
		if n.ID != w.id || len(n.Logs) != 1 || n.Logs[0].Author != w.author || n.Logs[0].Records["admitted"] < 1 {
			t.Errorf("M's network %d: %+v; want %s following %s, with records admitted", i, n, w.id, w.author)
		}
	}
	resp, err := http.Get(m.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, s := range []string{`dso_network_log_state{author="nodeP1",network="code",state="ok"} 1`,
		`dso_network_log_state{author="nodeP2",network="research",state="ok"} 1`} {
		if !bytes.Contains(metrics, []byte(s)) {
			t.Errorf("M's metrics lack %s", s)
		}
	}

	// Retrieval spans the networks; X-DSO-Domain narrows it by prefix.
	rustQ := "Should I use iterators or index loops in Rust? Do bounds checks get elided?"
	surveyQ := "Should I preregister my hypothesis and analysis before collecting the survey data?"
	if got := askWith(t, m, be, "", rustQ); !strings.Contains(got, "prefer iterators over index loops") {
		t.Errorf("M did not inject P1's lesson (network code); the backend got %s", got)
	}
	if got := askWith(t, m, be, "", surveyQ); !strings.Contains(got, "Preregister the hypothesis") {
		t.Errorf("M did not inject P2's lesson (network research); the backend got %s", got)
	}
	if got := askWith(t, m, be, "research", rustQ); strings.Contains(got, "prefer iterators") {
		t.Errorf("X-DSO-Domain: research injected a code lesson: %s", got)
	}
	if got := askWith(t, m, be, "code.rust", rustQ); !strings.Contains(got, "prefer iterators over index loops") {
		t.Errorf("X-DSO-Domain: code.rust did not inject the code.rust lesson: %s", got)
	}
	if got := askWith(t, m, be, "code", surveyQ); strings.Contains(got, "Preregister") {
		t.Errorf("X-DSO-Domain: code injected a research lesson: %s", got)
	}

	// A stop closes every network and exits cleanly.
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- m.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("M stopped: %v; want a clean exit", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("M did not stop within 30s of SIGTERM")
	}
}

// forwarder relays GETs to the address in to: 404 (no checkpoint yet, so
// a follower just waits) until it is set.
func forwarder(to *atomic.Pointer[string]) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		base := to.Load()
		if base == nil {
			http.NotFound(w, r)
			return
		}
		resp, err := http.Get(*base + r.URL.Path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	})
}

func TestSameLift(t *testing.T) {
	for _, tt := range []struct {
		lib, net uint64
		want     bool
	}{{0, 0, true}, {5, 0, true}, {5, 5, true}, {0, 7, false}, {5, 7, false}, {0, 0x64736f, true}} {
		if got := sameLift(config.Retrieval{Seed: tt.lib}, config.Network{Seed: tt.net}); got != tt.want {
			t.Errorf("sameLift(retrieval.seed %d, network seed %d) = %v; want %v", tt.lib, tt.net, got, tt.want)
		}
	}
}
