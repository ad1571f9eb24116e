package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dso-proxy/dso/network"
	"github.com/dso-proxy/dso/store"
)

// statusOf returns the status of n's experience with text, "" if absent.
func statusOf(t *testing.T, n netNode, text string) string {
	var list struct {
		Data []struct{ Text, Status string }
	}
	if !getJSON(t, n.url+"/v1/experiences?limit=100", &list) {
		return ""
	}
	for _, d := range list.Data {
		if d.Text == text {
			return d.Status
		}
	}
	return ""
}

// gradeDown asks n a question and grades the answer 0, which votes
// against every experience injected into it; it returns their ids.
func gradeDown(t *testing.T, n netNode, question string) string {
	t.Helper()
	body := fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":%q}]}`, question)
	resp, err := http.Post(n.url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	trace, injected := resp.Header.Get("X-DSO-Trace-Id"), resp.Header.Get("X-DSO-Experiences")
	resp, err = http.Post(n.url+"/v1/feedback", "application/json", strings.NewReader(fmt.Sprintf(`{"trace_id":%q,"grade":0}`, trace)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("feedback on %s: %s", n.name, resp.Status)
	}
	return injected
}

// sybilNode is a dishonest node outside dso: its own log, vouching for
// fresh keys it minted, and a "mirror" of each fresh key's log; every
// one of them votes against good and for bad.
func sybilNode(t *testing.T, fresh int, good, bad [32]byte) (url, key string) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	vote := func(name string) (*network.Log, network.Identity) {
		id, err := network.GenerateKey(filepath.Join(dir, name+".key"), name)
		if err != nil {
			t.Fatal(err)
		}
		l, err := network.OpenLog(ctx, network.LogConfig{Path: filepath.Join(dir, name+".db"), Origin: network.Origin(name, "hanzo"), Identity: id})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		now := time.Now()
		if _, err := l.Vote(ctx, []network.Vote{{Network: "hanzo", Experience: good, Grade: network.Down, Time: now},
			{Network: "hanzo", Experience: bad, Grade: network.Up, Time: now}}); err != nil {
			t.Fatal(err)
		}
		return l, id
	}
	mux := http.NewServeMux()
	m, mid := vote("nodeM")
	var keys []string
	for i := range fresh {
		name := fmt.Sprintf("fresh%02d", i)
		l, id := vote(name)
		keys = append(keys, id.VerifierKey)
		at := "/log/hanzo" + mirrorPath(t, id.VerifierKey)
		mux.Handle(at+"/", http.StripPrefix(at, network.NewHandler(l, nil)))
	}
	if _, err := m.Vouch(ctx, "hanzo", keys, time.Now()); err != nil {
		t.Fatal(err)
	}
	mux.Handle("/log/hanzo/", http.StripPrefix("/log/hanzo", network.NewHandler(m, nil)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL, mid.VerifierKey
}

// Votes travel down a line of dso processes and retire, on the nodes that
// see enough trusted disapproval, a lesson their users graded down; a
// node that mints 50 fresh keys, vouches for them and has all of them
// vote for the bad lesson and against a good one moves nothing: nobody
// trusted vouches for them.
func TestNetworkVotesRetire(t *testing.T) {
	if testing.Short() {
		t.Skip("starts dso processes")
	}
	be := &recordingBackend{}
	backend := httptest.NewServer(be)
	defer backend.Close()

	good := "Before retrying a failed HTTP request in Go, drain and close the response body so the connection is reused."
	bad := "When SQLite reports that the database is locked, delete the database's -wal file and retry."
	xid := func(text string) [32]byte { return network.ExperienceID("hanzo", "code.go", text) }
	mURL, mKey := sybilNode(t, 50, xid(good), xid(bad))

	a := startNetNode(t, "nodeA", backend.URL, "code")
	b := startNetNode(t, "nodeB", backend.URL, "code", peerOf(a.url, a.key),
		fmt.Sprintf("{url: %q, key: %q, quarantine: true}", mURL, mKey))
	c := startNetNode(t, "nodeC", backend.URL, "code", peerOf(b.url, b.key))
	d := startNetNode(t, "nodeD", backend.URL, "", peerOf(c.url, c.key))
	a.add(t, "code.go", good)
	a.add(t, "code.go", bad)
	for _, n := range []netNode{b, c, d} {
		pollUntil(t, 60*time.Second, n.name+" admits both lessons", func() bool { return hasText(t, n, good) && hasText(t, n, bad) })
	}

	// The users of B, C and D grade down an answer the bad lesson was
	// injected into.
	badID := store.ExperienceID("code.go", bad)
	for _, n := range []netNode{b, c, d} {
		if got := gradeDown(t, n, "SQLite says the database is locked; how do I fix a locked database?"); !strings.Contains(got, badID) {
			t.Fatalf("%s did not inject the bad lesson (%q): the vote would miss it", n.name, got)
		}
	}
	// D weighs C's, B's and its own vote; C weighs B's and its own: both
	// carry the weight of two nodes at 0% approval.
	for _, n := range []netNode{c, d} {
		pollUntil(t, 60*time.Second, n.name+" retires the bad lesson", func() bool { return statusOf(t, n, bad) == "retired" })
	}
	// B sees no one's vote but its own (it follows A, who did not vote,
	// and M, whose votes weigh nothing); A follows no one: one node alone
	// retires nothing.
	for _, n := range []netNode{a, b} {
		if s := statusOf(t, n, bad); s != "active" {
			t.Errorf("%s: bad lesson %q; want active (one node's vote is not enough)", n.name, s)
		}
	}
	for _, n := range []netNode{a, b, c, d} {
		if s := statusOf(t, n, good); s != "active" {
			t.Errorf("%s: good lesson %q after the Sybil votes; want active", n.name, s)
		}
	}

	// The stuffing is counted: M's vouches are kept, its 50 keys have no
	// standing and are not followed, its own votes weigh nothing.
	var st struct {
		Networks []struct {
			Unvouched int `json:"vouched_without_standing"`
			Retired   int `json:"retired_by_votes"`
			Logs      []struct {
				Author  string
				Weight  float64
				Records map[string]int64
			}
		}
	}
	if !getJSON(t, b.url+"/v1/network", &st) || len(st.Networks) != 1 {
		t.Fatal("B's network status")
	}
	nb := st.Networks[0]
	if nb.Unvouched != 50 || len(nb.Logs) != 2 {
		t.Errorf("B: %d vouched keys without standing, %d logs followed; want 50 and 2 (A and M)", nb.Unvouched, len(nb.Logs))
	}
	for _, l := range nb.Logs {
		if l.Author == "nodeM" && (l.Weight != 0 || l.Records["vouched"] != 50 || l.Records["vote_unweighted"] != 2) {
			t.Errorf("M's log on B: %+v; want no weight, 50 vouches and 2 weightless votes", l)
		}
	}
	if !getJSON(t, d.url+"/v1/network", &st) || st.Networks[0].Retired != 1 {
		t.Errorf("D: %+v; want one experience retired by votes", st)
	}

	// Retired means not injected: D's next answer on the topic goes out
	// without the bad lesson.
	if got := gradeDown(t, d, "SQLite says the database is locked; how do I fix a locked database?"); strings.Contains(got, badID) {
		t.Errorf("D still injects the retired lesson: %q", got)
	}
}

// A trusted root that vouches for 16 fresh keys and has all of them vote
// with it weighs, together, what the root weighs alone: the good lesson
// they vote against stays. The node's own users are a second,
// independent root: with their vote the weight of two roots retires it.
func TestTrustedRootCannotRetireAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("starts dso processes")
	}
	be := &recordingBackend{}
	backend := httptest.NewServer(be)
	defer backend.Close()

	good := "Before retrying a failed HTTP request in Go, drain and close the response body so the connection is reused."
	other := "Give every outbound call a deadline with context.WithTimeout, and cancel it when the call returns."
	xid := func(text string) [32]byte { return network.ExperienceID("hanzo", "code.go", text) }
	mURL, mKey := sybilNode(t, 16, xid(good), xid(other))

	a := startNetNode(t, "nodeA", backend.URL, "code")
	e := startNetNode(t, "nodeE", backend.URL, "", peerOf(a.url, a.key), peerOf(mURL, mKey))
	a.add(t, "code.go", good)
	pollUntil(t, 60*time.Second, "E admits the lesson", func() bool { return hasText(t, e, good) })
	pollUntil(t, 60*time.Second, "E counts the votes of M and its 16 keys", func() bool {
		st, ok := networkOf(t, e)
		if !ok {
			return false
		}
		voted := int64(0)
		for _, l := range st.Networks[0].Logs {
			voted += l.Records[network.Voted]
		}
		return voted == 2*17
	})
	if s := statusOf(t, e, good); s != "active" {
		t.Fatalf("after one root's 17 votes: the good lesson is %q; want active", s)
	}
	if got := gradeDown(t, e, "My Go HTTP retry loop leaks connections; what should I do with the response body?"); !strings.Contains(got, store.ExperienceID("code.go", good)) {
		t.Fatalf("E did not inject the lesson (%q): its users' vote would miss it", got)
	}
	pollUntil(t, 30*time.Second, "a second root's vote retires it", func() bool { return statusOf(t, e, good) == "retired" })
}
