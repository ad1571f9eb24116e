package main

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dso-proxy/dso/network"
)

// confidenceOf returns the confidence n's library holds text at; false
// when it does not hold it.
func confidenceOf(t *testing.T, n netNode, text string) (float64, bool) {
	t.Helper()
	var list struct {
		Data []struct {
			Text       string
			Confidence float64
		}
	}
	if !getJSON(t, n.url+"/v1/experiences?limit=100", &list) {
		t.Fatalf("%s: listing experiences failed", n.name)
	}
	for _, e := range list.Data {
		if e.Text == text {
			return e.Confidence, true
		}
	}
	return 0, false
}

// A trusted peer caught showing two histories loses its standing, and
// what the node took on its word is taken back: a lesson only it
// published leaves the library for the quarantine (shown, never
// injected), one that another trusted author published too stays, at
// that author's confidence alone. A restart changes none of it.
func TestForkedPeersLessonsWithdrawn(t *testing.T) {
	if testing.Short() {
		t.Skip("starts dso processes")
	}
	be := &recordingBackend{}
	backend := httptest.NewServer(be)
	defer backend.Close()

	f := newAttacker(t, "nodeF") // publishes, then forks
	g := newAttacker(t, "nodeG") // honest
	only := "Before retrying a failed HTTP request in Go, drain and close the response body so the connection is reused."
	shared := "Give every outbound call a deadline with context.WithTimeout, and cancel it when the call returns."
	fShared, gShared := lesson("hanzo", shared), lesson("hanzo", shared)
	fShared.Experience.Confidence, gShared.Experience.Confidence = 0.95, 0.6
	f.set(f.log(t, lesson("hanzo", only), fShared))
	g.set(g.log(t, gShared))

	d := startNetNode(t, "nodeD", backend.URL, "", f.peer(), g.peer())
	waitLog(t, d, g.url, "G's lesson taken", func(l logStatus) bool { return l.Records[network.Admitted] == 1 })
	waitLog(t, d, f.url, "F's lessons taken", func(l logStatus) bool { return l.Records[network.Admitted] == 2 })
	question := "My Go HTTP retry loop leaks connections; what should I do with the response body before retrying?"
	if !strings.Contains(injected(t, be, d, question), "drain and close the response body") {
		t.Fatal("D does not inject F's lesson before the fork: the checks below prove nothing")
	}
	if c, ok := confidenceOf(t, d, shared); !ok || c == 0.6 {
		t.Fatalf("the shared lesson before the fork: confidence %v (held %v); want F's and G's together, not G's alone", c, ok)
	}

	// F restarts on another log with the same key: a smaller tree that is
	// not its past.
	f.set(f.log(t, lesson("hanzo", "Retry every failed request at once, forever.")))
	waitLog(t, d, f.url, "F's fork caught", func(l logStatus) bool { return l.State == network.PeerForked })
	// Counted once the whole withdrawal is done.
	waitLog(t, d, f.url, "F's lessons withdrawn", func(l logStatus) bool { return l.Records[network.Withdrawn] == 1 })

	check := func(when string, withdrawn int64) {
		t.Helper()
		if c, ok := confidenceOf(t, d, shared); !ok || c != 0.6 {
			t.Errorf("%s: the shared lesson at confidence %v (held %v); want G's, 0.6", when, c, ok)
		}
		if hasText(t, d, only) || hasText(t, d, "Retry every failed request at once, forever.") {
			t.Errorf("%s: D holds a lesson of F's: %q", when, texts(t, d))
		}
		if got := injected(t, be, d, question); strings.Contains(got, "drain and close") {
			t.Errorf("%s: D injects F's withdrawn lesson: %q", when, got)
		}
		var st struct {
			Networks []struct {
				Quarantine []network.Quarantined
				Logs       []logStatus
			}
		}
		if !getJSON(t, d.url+"/v1/network", &st) || len(st.Networks) != 1 {
			t.Fatalf("%s: no network status", when)
		}
		var quarantined []string
		for _, q := range st.Networks[0].Quarantine {
			if strings.HasPrefix(q.Author, "nodeF+") {
				quarantined = append(quarantined, q.Text)
			}
		}
		if len(quarantined) != 1 || quarantined[0] != only {
			t.Errorf("%s: F's records in quarantine %q; want its withdrawn lesson", when, quarantined)
		}
		for _, l := range st.Networks[0].Logs {
			if l.Author == "nodeF" && (l.State != network.PeerForked || l.Records[network.Withdrawn] != withdrawn) {
				t.Errorf("%s: F's log %+v; want forked, %d records withdrawn", when, l, withdrawn)
			}
		}
	}
	check("after the fork", 1)

	d.cmd.Process.Kill()
	d.cmd.Wait()
	_, d.url = startDSO(t, "--config", d.config)
	waitLog(t, d, f.url, "restarted D reports F's fork", func(l logStatus) bool { return l.State == network.PeerForked })
	pollUntil(t, 30*time.Second, "restarted D injects again", func() bool {
		return strings.Contains(injected(t, be, d, "How do I give an outbound call a deadline?"), "context.WithTimeout")
	})
	check("after a restart", 0)
}
