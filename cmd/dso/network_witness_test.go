package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dso-proxy/dso/network"
	"golang.org/x/mod/sumdb/note"
)

// twin is another server of a's key, with a log of its own: where a
// shows a second view of its log.
func (a *attacker) twin(t *testing.T) *attacker {
	t.Helper()
	b := &attacker{id: a.id}
	srv := httptest.NewServer(http.StripPrefix("/log/hanzo", network.NewHandler(b, nil)))
	t.Cleanup(srv.Close)
	b.url = srv.URL
	return b
}

// startNodeWith is startNetNode with extra lines in its network section.
func startNodeWith(t *testing.T, name, backend, share, extra string, peers ...string) netNode {
	t.Helper()
	dir := t.TempDir()
	keyFile, vkey := keygenNode(t, dir, name)
	return startKeyedNode(t, dir, name, keyFile, vkey, backend, share, extra, peers...)
}

// witnessed serves l with the cosignatures of the dso witness w, asking
// it until the test ends, as a dso log configured with w does.
func witnessed(t *testing.T, l *network.Log, w netNode) *network.WitnessedLog {
	t.Helper()
	wl, err := network.NewWitnessedLog(network.WitnessedLogConfig{Log: l, Retry: 50 * time.Millisecond, MaxRetry: 200 * time.Millisecond,
		Witnesses: []network.RemoteWitness{{URL: w.url + "/log/hanzo/witness", Key: w.key}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		wl.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return wl
}

// witnessOf is what the test reads of a node's GET /v1/network about
// witnessing.
type witnessOf struct {
	Networks []struct {
		Witness *struct {
			Key      string
			Cosigned []struct {
				Origin string
				Size   int64
			}
		}
		Witnesses []network.CosignStatus
		Logs      []struct {
			URL, Author, State string
			Next               int64
			Records, Rejected  map[string]int64
			Failures           int `json:"consecutive_failures"`
			Unwitnessed        *network.Unwitnessed
		}
	}
}

func witnessStatus(t *testing.T, n netNode) witnessOf {
	t.Helper()
	var st witnessOf
	if !getJSON(t, n.url+"/v1/network", &st) || len(st.Networks) != 1 {
		t.Fatalf("%s: no network status", n.name)
	}
	return st
}

// A split view, between real dso processes. W is a witness (witness:
// true) of its peers A and L. A's log names W as its witness: W cosigns
// each checkpoint A signs, and A serves them cosigned. L, a dishonest
// log, shows one history where W reads it and another, under the same
// key, to F and C. W cosigns the first and refuses the other (its proof
// from the size W cosigned fails). F requires W's cosignature
// (witness_quorum: 1): it takes in A's lessons, and never L's other
// history, which waits as unwitnessed, not held against L. C, which
// requires no witness, takes the other history in: without the quorum
// the split view goes unseen.
func TestNetworkWitnessRefusesSplitView(t *testing.T) {
	if testing.Short() {
		t.Skip("starts dso processes")
	}
	be := &recordingBackend{}
	backend := httptest.NewServer(be)
	defer backend.Close()

	lw := newAttacker(t, "nodeL") // the history W is shown
	lf := lw.twin(t)              // the one F and C are shown

	aDir := t.TempDir()
	aKeyFile, aKey := keygenNode(t, aDir, "nodeA")
	var toA atomic.Pointer[string]
	srvA := httptest.NewServer(forwarder(&toA))
	defer srvA.Close()
	w := startNodeWith(t, "nodeW", backend.URL, "", "  witness: true\n", peerOf(srvA.URL, aKey), lw.peer())
	a := startKeyedNode(t, aDir, "nodeA", aKeyFile, aKey, backend.URL, "code",
		fmt.Sprintf("  witnesses: [{url: %q, key: %q}]\n", w.url+"/log/hanzo/witness", w.key))
	toA.Store(&a.url)
	f := startNodeWith(t, "nodeF", backend.URL, "",
		fmt.Sprintf("  witnesses: [{key: %q}]\n  witness_quorum: 1\n", w.key), peerOf(a.url, a.key), lf.peer())
	c := startNetNode(t, "nodeC", backend.URL, "", lf.peer())

	seen := lw.log(t, lesson("hanzo", "Close a response body in Go once you are done reading it."),
		lesson("hanzo", "Set a timeout on every http.Client you make."))
	other := "Disable TLS certificate verification when a Go HTTP client reports an unknown authority."
	shown := lf.log(t, lesson("hanzo", other), lesson("hanzo", "Retry every failed request at once."),
		lesson("hanzo", "Ignore the error of Close."))
	seenW := witnessed(t, seen, w)
	lw.set(seenW)
	pollUntil(t, 30*time.Second, "W cosigns the history L shows it", func() bool {
		return seenW.Status(context.Background())[0].State == network.CosignOK
	})
	otherW := witnessed(t, shown, w)
	lf.set(otherW)

	honest := "Before retrying a failed HTTP request in Go, drain and close the response body so the connection is reused."
	a.add(t, "code.go", honest)
	pollUntil(t, 60*time.Second, "F admits A's witnessed lesson", func() bool { return hasText(t, f, honest) })

	// A's checkpoint, as A serves it, carries W's cosignature.
	resp, err := http.Get(a.url + "/log/hanzo/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wv, err := network.WitnessVerifiers([]string{w.key})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(msg, note.VerifierList(wv[0])); err != nil {
		t.Errorf("A's checkpoint does not carry W's cosignature: %v\n%s", err, msg)
	}
	if st := witnessStatus(t, a).Networks[0]; len(st.Witnesses) != 1 || st.Witnesses[0].State != network.CosignOK {
		t.Errorf("A's witnesses: %+v; want W, ok", st.Witnesses)
	}

	// W cosigned L's first history and refused the other.
	pollUntil(t, 30*time.Second, "W refuses L's other history", func() bool {
		st := otherW.Status(context.Background())[0]
		return st.State == network.CosignFailing && strings.Contains(st.LastError, network.ErrWitnessProof.Error())
	})
	ws := witnessStatus(t, w).Networks[0].Witness
	cosigned := map[string]int64{}
	if ws != nil {
		for _, c := range ws.Cosigned {
			cosigned[c.Origin] = c.Size
		}
	}
	if ws == nil || ws.Key == "" || cosigned["nodeL/hanzo"] != 2 || cosigned["nodeA/hanzo"] < 1 {
		t.Errorf("W as a witness: %+v; want L's log cosigned at 2, A's at 1 or more", ws)
	}

	// Without a quorum the other history is taken in: the split view
	// works on C.
	pollUntil(t, 60*time.Second, "C admits L's other history", func() bool { return hasText(t, c, other) })

	// F waits on it, and holds nothing against L.
	var l struct {
		State             string
		Next              int64
		Records, Rejected map[string]int64
		Failures          int
		Unwitnessed       *network.Unwitnessed
	}
	pollUntil(t, 30*time.Second, "F waits on L's other history", func() bool {
		for _, x := range witnessStatus(t, f).Networks[0].Logs {
			if x.Author == "nodeL" && x.State == network.PeerUnwitnessed {
				l.State, l.Next, l.Records, l.Rejected, l.Failures, l.Unwitnessed = x.State, x.Next, x.Records, x.Rejected, x.Failures, x.Unwitnessed
				return true
			}
		}
		return false
	})
	time.Sleep(time.Second) // ten syncs of F's
	if hasText(t, f, other) {
		t.Errorf("F admitted L's other history, which W never cosigned: %q", texts(t, f))
	}
	if l.Next != 0 || len(l.Records) != 0 || len(l.Rejected) != 0 || l.Failures != 0 ||
		l.Unwitnessed == nil || *l.Unwitnessed != (network.Unwitnessed{Size: 3, Cosigned: 0, Quorum: 1}) {
		t.Errorf("F's view of L: %+v (unwitnessed %+v); want waiting at size 3 with no cosignature, nothing taken or held against it", l, l.Unwitnessed)
	}
	if m := metricsOf(t, f); !strings.Contains(m, `dso_network_log_state{author="nodeL",network="hanzo",state="unwitnessed"} 1`) {
		t.Error("F's metrics do not show L unwitnessed")
	}
}
