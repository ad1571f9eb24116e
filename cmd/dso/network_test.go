package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dso-proxy/dso/network"
	"golang.org/x/mod/sumdb/note"
)

// netNode is a dso process of the network test.
type netNode struct {
	name, url, key string
	config         string // its file, to restart it
	cmd            *exec.Cmd
}

// keygenNode makes a key named name in dir and returns its file and
// verifier key.
func keygenNode(t *testing.T, dir, name string) (string, string) {
	t.Helper()
	file := filepath.Join(dir, name+".key")
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"keygen", "--out", file, "--name", name}, &out, &errb); code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	return file, lines[len(lines)-1]
}

// startNetNode starts a dso serving network "hanzo" in a data directory
// of its own, with a key of its own, following peers (YAML flow maps).
func startNetNode(t *testing.T, name, backend, share string, peers ...string) netNode {
	t.Helper()
	return startNetNodeWith(t, name, backend, netRetrieval, share, peers...)
}

// netRetrieval is the retrieval settings of the network tests' nodes.
const netRetrieval = `{embedder: "hash:256", min_score: 0.05}`

// startNetNodeWith is startNetNode with retrieval's settings (a YAML flow
// map).
func startNetNodeWith(t *testing.T, name, backend, retrieval, share string, peers ...string) netNode {
	t.Helper()
	dir := t.TempDir()
	keyFile, vkey := keygenNode(t, dir, name)
	return startNode(t, dir, name, keyFile, vkey, backend, retrieval, share, "", peers...)
}

// startKeyedNode is startNetNode in dir with the key in keyFile (whose
// verifier key is vkey), and extra, when not empty, as more lines of its
// network section.
func startKeyedNode(t *testing.T, dir, name, keyFile, vkey, backend, share, extra string, peers ...string) netNode {
	t.Helper()
	return startNode(t, dir, name, keyFile, vkey, backend, netRetrieval, share, extra, peers...)
}

// startNode is startKeyedNode with retrieval's settings (a YAML flow map).
func startNode(t *testing.T, dir, name, keyFile, vkey, backend, retrieval, share, extra string, peers ...string) netNode {
	t.Helper()
	cfg := fmt.Sprintf(`data: %q
backends: [{name: fake, type: openai, url: %q}]
retrieval: %s
network:
  id: hanzo
  key_file: %q
  share: [%s]
  sync_interval: 100ms
  peers: [%s]
`, filepath.Join(dir, "data"), backend+"/v1", retrieval, keyFile, share, strings.Join(peers, ", ")) + extra
	file := filepath.Join(dir, "dso.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, url := startDSO(t, "--config", file)
	return netNode{name: name, url: url, key: vkey, config: file, cmd: cmd}
}

// add adds an experience to n's library through its API.
func (n netNode) add(t *testing.T, domain, text string) {
	t.Helper()
	body := fmt.Sprintf(`{"text":%q,"domain":%q,"confidence":0.9}`, text, domain)
	resp, err := http.Post(n.url+"/v1/experiences", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("adding on %s: %s", n.name, resp.Status)
	}
}

// peerOf is the YAML of a peer following log url by key.
func peerOf(url, key string) string { return fmt.Sprintf("{url: %q, key: %q}", url, key) }

// mirrorOf is the URL of n's mirror of the log by key, a verifier key.
func mirrorOf(t testing.TB, n netNode, key string) string {
	t.Helper()
	return n.url + "/log/hanzo" + mirrorPath(t, key)
}

// mirrorPath is where a node serves its mirror of the log by key, below
// its log.
func mirrorPath(t testing.TB, key string) string {
	t.Helper()
	v, err := note.NewVerifier(key)
	if err != nil {
		t.Fatal(err)
	}
	return network.MirrorPath(v)
}

// recordingBackend is a chat backend that keeps every request body.
type recordingBackend struct {
	mu     sync.Mutex // protects bodies
	bodies []string
}

func (b *recordingBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	b.mu.Lock()
	b.bodies = append(b.bodies, string(body))
	b.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`)
}

func (b *recordingBackend) last() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.bodies) == 0 {
		return ""
	}
	return b.bodies[len(b.bodies)-1]
}

// pollUntil calls cond until it holds or the deadline passes.
func pollUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func getJSON(t *testing.T, url string, v any) bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(v) == nil
}

// texts lists the texts of n's library.
func texts(t *testing.T, n netNode) []string {
	var list struct {
		Data []struct {
			Text       string `json:"text"`
			SourceNode string `json:"source_node"`
		}
	}
	if !getJSON(t, n.url+"/v1/experiences?limit=100", &list) {
		return nil
	}
	var out []string
	for _, d := range list.Data {
		out = append(out, d.Text)
	}
	return out
}

func hasText(t *testing.T, n netNode, text string) bool {
	for _, s := range texts(t, n) {
		if s == text {
			return true
		}
	}
	return false
}

// netStatus is what the test reads of GET /v1/network.
type netStatus struct {
	Networks []struct {
		ID          string
		Size        int64
		Quarantined int
		Logs        []struct {
			URL, Author, State string
			Size, Next         int64
			Records, Rejected  map[string]int64
			LastSync           *time.Time `json:"last_sync"`
			LastError          string     `json:"last_error"`
		}
	}
}

func networkOf(t *testing.T, n netNode) (netStatus, bool) {
	var st netStatus
	ok := getJSON(t, n.url+"/v1/network", &st)
	return st, ok && len(st.Networks) == 1
}

// Four dso processes in a line, each with its own data and key, each
// configured with the one before it only: B follows A, C follows B, D
// follows C. Each finds the logs further up through its peer's vouches
// and follows them through its peer's mirrors. What A shares reaches D's
// library and is injected there for a paraphrased question;
// what A does not share never leaves A; B restarted resumes where it
// was. A fifth node following A through
// a proxy that tampers with entries rejects them, counts them, and drops
// the peer; a sixth that follows A without trusting it quarantines.
func TestNetworkLineOfNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts dso processes")
	}
	be := &recordingBackend{}
	backend := httptest.NewServer(be)
	defer backend.Close()

	a := startNetNode(t, "nodeA", backend.URL, "code")
	b := startNetNode(t, "nodeB", backend.URL, "code", peerOf(a.url, a.key))
	c := startNetNode(t, "nodeC", backend.URL, "code", peerOf(b.url, b.key))
	d := startNetNode(t, "nodeD", backend.URL, "", peerOf(c.url, c.key))
	tamper := httptest.NewServer(tamperingProxy(a.url))
	defer tamper.Close()
	e := startNetNode(t, "nodeE", backend.URL, "", peerOf(tamper.URL, a.key))
	q := startNetNode(t, "nodeQ", backend.URL, "", fmt.Sprintf("{url: %q, key: %q, quarantine: true}", a.url, a.key))

	shared := "Before retrying a failed HTTP request in Go, drain and close the response body so the connection is reused."
	private := "The staging database password rotates every Monday."
	a.add(t, "code.go", shared)
	a.add(t, "ops.secrets", private)

	// A node mirrors what it fetched before it has admitted it, so the
	// next node down the line may hold it first: wait for each.
	for _, n := range []netNode{d, c, b} {
		pollUntil(t, 60*time.Second, n.name+" admits what A shared", func() bool { return hasText(t, n, shared) })
	}
	for _, n := range []netNode{b, c, d} {
		if hasText(t, n, private) {
			t.Errorf("%s holds A's unshared experience", n.name)
		}
	}
	st, ok := networkOf(t, a)
	if !ok || st.Networks[0].Size != 1 {
		t.Errorf("A's log: %+v; want one record, the shared one", st)
	}
	// B and C do not sign what they admitted: their own logs hold only
	// their vouch for their peer.
	for _, n := range []netNode{b, c} {
		if st, ok := networkOf(t, n); !ok || st.Networks[0].Size != 1 {
			t.Errorf("%s's own log: %+v; want its one vouch", n.name, st)
		}
	}
	// D found A through C's vouch for B and B's for A, and follows it
	// through C's mirror, trusting it at depth 3.
	st, _ = networkOf(t, d)
	logs := map[string]string{}
	for _, l := range st.Networks[0].Logs {
		logs[l.Author] = l.URL
	}
	if len(logs) != 3 || logs["nodeA"] != mirrorOf(t, c, a.key) || logs["nodeB"] != mirrorOf(t, c, b.key) {
		t.Errorf("D follows %v; want C, and B and A through C's mirrors", logs)
	}

	// B restarted on the same data resumes where it was: it takes A's log
	// from the checkpoint it had accepted, admitting nothing again.
	b.cmd.Process.Kill()
	b.cmd.Wait()
	_, b.url = startDSO(t, "--config", b.config)
	pollUntil(t, 30*time.Second, "restarted B syncs A", func() bool {
		st, ok := networkOf(t, b)
		return ok && len(st.Networks[0].Logs) == 1 && st.Networks[0].Logs[0].LastSync != nil
	})
	if st, _ := networkOf(t, b); st.Networks[0].Logs[0].Next != 1 || st.Networks[0].Logs[0].Records["admitted"] != 0 {
		t.Errorf("restarted B: %+v; want resumed at 1, nothing admitted again", st.Networks[0].Logs[0])
	}

	resp, err := http.Post(d.url+"/v1/chat/completions", "application/json", strings.NewReader(
		`{"model":"m","messages":[{"role":"user","content":"My Go HTTP retry loop leaks connections; what should I do with the response body before retrying?"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := be.last(); !strings.Contains(got, "drain and close the response body") {
		t.Errorf("D did not inject the shared lesson; the backend got %s", got)
	}

	pollUntil(t, 60*time.Second, "E drops the tampering peer", func() bool {
		st, ok := networkOf(t, e)
		return ok && len(st.Networks[0].Logs) == 1 && st.Networks[0].Logs[0].State == "dropped"
	})
	st, _ = networkOf(t, e)
	if l := st.Networks[0].Logs[0]; l.Rejected["bad_entry"] < 1 || l.Records["admitted"] != 0 {
		t.Errorf("E's log status %+v; want bad entries counted, nothing admitted", l)
	}
	if ts := texts(t, e); len(ts) != 0 {
		t.Errorf("E admitted %q from a tampered log", ts)
	}
	// The log's requests (B's and the tamperer's reads of A's) are in
	// A's request metrics, as its API routes are.
	resp, err = http.Get(a.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(metrics, []byte(`dso_proxy_requests_total{backend="",code="200",route="/log/{network}/*"}`)) {
		t.Errorf("A's metrics do not count the requests for its log")
	}

	resp, err = http.Get(e.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{`dso_network_rejected_total{author="nodeA",network="hanzo",reason="bad_entry"}`,
		`dso_network_log_state{author="nodeA",network="hanzo",state="dropped"} 1`} {
		if !bytes.Contains(metrics, []byte(m)) {
			t.Errorf("E's metrics lack %s", m)
		}
	}

	pollUntil(t, 60*time.Second, "Q quarantines the untrusted log's record", func() bool {
		st, ok := networkOf(t, q)
		return ok && st.Networks[0].Quarantined == 1
	})
	if ts := texts(t, q); len(ts) != 0 {
		t.Errorf("Q admitted %q from a log it does not trust", ts)
	}
}

// tamperingProxy serves the log at base/log/hanzo, with the last byte of
// every entry bundle flipped: a record that no longer hashes to the
// signed tree.
func tamperingProxy(base string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(base + r.URL.Path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusOK && strings.Contains(r.URL.Path, "/tile/entries/") && len(body) > 0 {
			body[len(body)-1] ^= 1
		}
		w.WriteHeader(resp.StatusCode)
		w.Write(body)
	})
}
