package network

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// testWitness is a witness of some logs, served over HTTP at prefix.
type testWitness struct {
	id     Identity
	w      *Witness
	st     *State
	prefix string
	// closed makes it answer every request 503, as a witness down would.
	closed atomic.Bool
}

// startWitness starts a witness named name of the hanzo logs of ids, its
// state in dir.
func startWitness(t *testing.T, name, dir string, ids ...Identity) *testWitness {
	t.Helper()
	tw := &testWitness{id: testIdentity(t, name), st: openTestState(t, filepath.Join(dir, name))}
	logs := map[string]string{}
	for _, id := range ids {
		logs[Origin(id.Signer.Name(), "hanzo")] = id.VerifierKey
	}
	var err error
	if tw.w, err = NewWitness(WitnessConfig{Cosigner: tw.id.Cosigner, Logs: logs, State: tw.st}); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/log/hanzo/witness/", http.StripPrefix("/log/hanzo/witness", tw.w))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tw.closed.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	tw.prefix = srv.URL + "/log/hanzo/witness"
	return tw
}

// verifier is the verifier of tw's cosignatures, from its node verifier
// key as a follower names it.
func (tw *testWitness) verifier(t testing.TB) note.Verifier {
	t.Helper()
	vs, err := WitnessVerifiers([]string{tw.id.VerifierKey})
	if err != nil {
		t.Fatal(err)
	}
	return vs[0]
}

// remote is tw as a log names it.
func (tw *testWitness) remote() RemoteWitness {
	return RemoteWitness{URL: tw.prefix, Key: tw.id.VerifierKey}
}

// submit asks tw to cosign l's checkpoint, with a proof from old.
func submit(t *testing.T, tw *testWitness, l *Log, old int64) ([]byte, []byte, error) {
	t.Helper()
	ctx := context.Background()
	msg, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var proof tlog.TreeProof
	if old <= l.Size() {
		if proof, err = l.TreeProof(ctx, old, l.Size()); err != nil {
			t.Fatal(err)
		}
	}
	sigs, err := SubmitCheckpoint(ctx, nil, tw.prefix, AddCheckpointRequest{Old: old, Proof: proof, Checkpoint: msg})
	return msg, sigs, err
}

func wantConflict(t *testing.T, what string, err error, size int64) {
	t.Helper()
	var c *ConflictError
	if !errors.As(err, &c) || c.Size != size {
		t.Errorf("%s: %v; want a 409 at size %d", what, err, size)
	}
}

// A witness cosigns a log's checkpoints as long as each extends the last
// it cosigned, and answers everything else as C2SP tlog-witness says: 404
// for a log it does not know, 403 for a checkpoint its log's key did not
// sign, 409 with its size for a wrong old size or another root at that
// size, 422 for a proof that fails (another history), 400 for an old size
// past the checkpoint. What it cosigned survives a restart.
func TestWitnessAddCheckpoint(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := testIdentity(t, "nodeA")
	tw := startWitness(t, "nodeW", dir, a)
	l := openTestLog(t, a, filepath.Join(dir, "a.db"))
	appendN(t, l, a, 0, 3)

	b := testIdentity(t, "nodeB")
	lb := openTestLog(t, b, filepath.Join(dir, "b.db"))
	if _, _, err := submit(t, tw, lb, 0); !errors.Is(err, ErrWitnessUnknownLog) {
		t.Errorf("a log it does not witness: %v; want ErrWitnessUnknownLog", err)
	}
	impostor := testIdentity(t, "nodeA")
	li := openTestLog(t, impostor, filepath.Join(dir, "impostor.db"))
	if _, _, err := submit(t, tw, li, 0); !errors.Is(err, ErrWitnessSignature) {
		t.Errorf("a checkpoint of A's origin signed by another key: %v; want ErrWitnessSignature", err)
	}
	_, _, err := submit(t, tw, l, 2)
	wantConflict(t, "an old size it never cosigned", err, 0)

	msg, sigs, err := submit(t, tw, l, 0)
	if err != nil {
		t.Fatalf("first checkpoint: %v", err)
	}
	if !bytes.HasPrefix(sigs, []byte("— nodeW ")) || bytes.Count(sigs, []byte("\n")) != 1 {
		t.Errorf("answer %q; want one signature line of nodeW", sigs)
	}
	// The cosignature verifies with the witness's node key as a
	// cosignature/v1 key, and with its WitnessKey: the same verifier.
	for _, k := range []string{tw.id.VerifierKey, tw.id.WitnessKey} {
		vs, err := WitnessVerifiers([]string{k})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := note.Open(append(msg, sigs...), note.VerifierList(vs[0])); err != nil {
			t.Errorf("cosignature does not verify with %s: %v", k, err)
		}
	}
	// It is no checkpoint signature of the witness's own log.
	if _, err := note.Open(append(msg, sigs...), note.VerifierList(verifierOf(t, tw.id))); err == nil {
		t.Error("the cosignature passes for a signature of the witness's own log")
	}

	appendN(t, l, a, 3, 10)
	if _, _, err := submit(t, tw, l, 3); err != nil {
		t.Fatalf("10 after 3: %v", err)
	}
	if _, _, err := submit(t, tw, l, 10); err != nil {
		t.Errorf("the same checkpoint again: %v", err)
	}
	if _, _, err := submit(t, tw, l, 11); !errors.Is(err, ErrWitnessRequest) {
		t.Errorf("old past the checkpoint: %v; want ErrWitnessRequest", err)
	}
	// A bad proof.
	appendN(t, l, a, 10, 12)
	cp, _ := l.Checkpoint(ctx)
	proof, err := l.TreeProof(ctx, 10, 12)
	if err != nil {
		t.Fatal(err)
	}
	proof[0][0] ^= 1
	if _, err := SubmitCheckpoint(ctx, nil, tw.prefix, AddCheckpointRequest{Old: 10, Proof: proof, Checkpoint: cp}); !errors.Is(err, ErrWitnessProof) {
		t.Errorf("a bad proof: %v; want ErrWitnessProof", err)
	}
	if _, err := SubmitCheckpoint(ctx, nil, tw.prefix, AddCheckpointRequest{Old: 0, Proof: proof, Checkpoint: cp}); !errors.Is(err, ErrWitnessRequest) {
		t.Errorf("a proof from 0: %v; want ErrWitnessRequest", err)
	}

	// Another history signed by A's key: larger, then as large.
	other := openTestLog(t, a, filepath.Join(dir, "a-other.db"))
	appendN(t, other, a, 100, 112)
	_, _, err = submit(t, tw, other, 0)
	wantConflict(t, "another history, old 0", err, 10)
	if _, _, err := submit(t, tw, other, 10); !errors.Is(err, ErrWitnessProof) {
		t.Errorf("another history proved from 10: %v; want ErrWitnessProof", err)
	}
	same := openTestLog(t, a, filepath.Join(dir, "a-same.db"))
	appendN(t, same, a, 200, 210)
	_, _, err = submit(t, tw, same, 10)
	wantConflict(t, "another root at the size cosigned", err, 10)
	ws, err := tw.st.ListWitnessed(ctx)
	if err != nil || len(ws) != 1 || ws[0].Origin != "nodeA/hanzo" || ws[0].Size != 10 {
		t.Fatalf("witnessed %+v, %v; want A's log at 10", ws, err)
	}
	if c, err := OpenCheckpoint([]byte(ws[0].Checkpoint), verifierOf(t, a), "nodeA/hanzo"); err != nil || c.Size != 10 {
		t.Errorf("kept checkpoint %+v, %v; want A's signed checkpoint of 10", c, err)
	}

	// Restarted on the same state: it remembers 10.
	st, err := OpenState(ctx, filepath.Join(dir, "nodeW", "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	w2, err := NewWitness(WitnessConfig{Cosigner: tw.id.Cosigner, Logs: map[string]string{"nodeA/hanzo": a.VerifierKey}, State: st})
	if err != nil {
		t.Fatal(err)
	}
	_, err = w2.AddCheckpoint(ctx, AddCheckpointRequest{Old: 0, Checkpoint: cp})
	wantConflict(t, "after a restart", err, 10)
}

// The HTTP surface: POST only, at /add-checkpoint, a bounded body, and a
// 409 as tlog-witness has it (text/x.tlog.size, the size and a newline).
func TestWitnessHTTP(t *testing.T) {
	dir := t.TempDir()
	a := testIdentity(t, "nodeA")
	tw := startWitness(t, "nodeW", dir, a)
	l := openTestLog(t, a, filepath.Join(dir, "a.db"))
	appendN(t, l, a, 0, 2)
	if _, _, err := submit(t, tw, l, 0); err != nil {
		t.Fatal(err)
	}
	msg, _ := l.Checkpoint(context.Background())
	post := func(path, method string, body []byte) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, tw.prefix+path, bytes.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	resp := post("/add-checkpoint", http.MethodPost, AddCheckpointRequest{Old: 1, Checkpoint: msg}.Format())
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusConflict || resp.Header.Get("Content-Type") != "text/x.tlog.size" || string(body) != "2\n" {
		t.Errorf("a wrong old size: %s %q %q; want 409 text/x.tlog.size \"2\\n\"", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	if resp := post("/add-checkpoint", http.MethodGet, nil); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET: %s; want 405 with Allow: POST", resp.Status)
	}
	if resp := post("/checkpoint", http.MethodPost, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("another path: %s; want 404", resp.Status)
	}
	if resp := post("/add-checkpoint", http.MethodPost, []byte("old 0\nnot a hash\n\n")); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a malformed body: %s; want 400", resp.Status)
	}
	huge := append(AddCheckpointRequest{Checkpoint: msg}.Format(), bytes.Repeat([]byte("x"), MaxAddCheckpoint)...)
	if resp := post("/add-checkpoint", http.MethodPost, huge); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a body over %d bytes: %s; want 413", MaxAddCheckpoint, resp.Status)
	}
}

// Requests for one log are handled one at a time, the check of the old
// size and the write of the new one together: of concurrent submissions
// from the same old size, one is cosigned and the others learn the size
// it stored. One waiting for its turn gives up with its context.
func TestWitnessOneRequestAtATime(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := testIdentity(t, "nodeA")
	tw := startWitness(t, "nodeW", dir, a)
	l := openTestLog(t, a, filepath.Join(dir, "a.db"))
	appendN(t, l, a, 0, 5)
	msg, _ := l.Checkpoint(ctx)
	var wg sync.WaitGroup
	var ok, conflicts atomic.Int32
	for range 8 {
		wg.Go(func() {
			_, err := tw.w.AddCheckpoint(ctx, AddCheckpointRequest{Old: 0, Checkpoint: msg})
			var c *ConflictError
			switch {
			case err == nil:
				ok.Add(1)
			case errors.As(err, &c) && c.Size == 5:
				conflicts.Add(1)
			default:
				t.Errorf("concurrent submission: %v", err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || conflicts.Load() != 7 {
		t.Errorf("%d cosigned, %d told the size; want 1 and 7", ok.Load(), conflicts.Load())
	}

	turn := tw.w.logs["nodeA/hanzo"].turn
	<-turn
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := tw.w.AddCheckpoint(short, AddCheckpointRequest{Old: 5, Checkpoint: msg}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting for a busy log: %v; want its context's deadline", err)
	}
	turn <- struct{}{}
}

// The witness writes what it cosigned with synchronous=FULL, and leaves
// the state's connections at NORMAL.
func TestWitnessWritesDurably(t *testing.T) {
	ctx := context.Background()
	st := openTestState(t, t.TempDir())
	var inside int
	err := withFullSync(ctx, st.db, func(c *sql.Conn) error {
		return c.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&inside)
	})
	if err != nil || inside != 2 {
		t.Errorf("synchronous %d, %v inside; want 2 (FULL)", inside, err)
	}
	var after int
	if err := st.db.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&after); err != nil || after != 1 {
		t.Errorf("synchronous %d, %v after; want 1 (NORMAL)", after, err)
	}
}

func TestParseAddCheckpoint(t *testing.T) {
	cp := "nodeA/hanzo\n2\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— nodeA AAAA\n"
	h := "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n"
	good := "old 1\n" + h + h + "\n" + cp
	r, err := ParseAddCheckpoint([]byte(good))
	if err != nil || r.Old != 1 || len(r.Proof) != 2 || string(r.Checkpoint) != cp {
		t.Fatalf("ParseAddCheckpoint(good) = %+v, %v", r, err)
	}
	if got := string(r.Format()); got != good {
		t.Errorf("Format = %q; want %q", got, good)
	}
	for _, s := range []string{
		"", "old 1", "old 1\n", "old 1\n\n", "old 01\n\n" + cp, "old -1\n\n" + cp, "old +1\n\n" + cp, "Old 1\n\n" + cp,
		"old  1\n\n" + cp, "old 1 \n\n" + cp, "old 1\r\n\r\n" + cp, "old 99999999999999999999\n\n" + cp,
		"old 1\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw\n\n" + cp,  // no padding
		"old 1\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaX=\n\n" + cp, // non-canonical
		"old 1\nAAAA\n\n" + cp,
		"old 1\n" + strings.Repeat(h, MaxProofLines+1) + "\n" + cp,
		"old 1\n\n" + strings.Repeat("x", MaxAddCheckpoint),
	} {
		if r, err := ParseAddCheckpoint([]byte(s)); !errors.Is(err, ErrWitnessRequest) {
			t.Errorf("ParseAddCheckpoint(%.60q) = %+v, %v; want ErrWitnessRequest", s, r, err)
		}
	}
	if _, err := ParseAddCheckpoint([]byte("old 1\n" + strings.Repeat(h, MaxProofLines) + "\n" + cp)); err != nil {
		t.Errorf("%d proof lines: %v", MaxProofLines, err)
	}
}

func FuzzParseAddCheckpoint(f *testing.F) {
	cp := "nodeA/hanzo\n2\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— nodeA AAAA\n"
	h := "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n"
	for _, s := range []string{"old 0\n\n" + cp, "old 1\n" + h + h + "\n" + cp, "old 12\n" + h + "\nx", "old 1\n\n", "old 01\n\n" + cp, ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseAddCheckpoint(body)
		if err != nil {
			if !errors.Is(err, ErrWitnessRequest) {
				t.Fatalf("ParseAddCheckpoint(%q): %v; not ErrWitnessRequest", body, err)
			}
			return
		}
		if got := r.Format(); !bytes.Equal(got, body) {
			t.Fatalf("ParseAddCheckpoint(%q) = %+v, which formats as %q", body, r, got)
		}
		if r.Old < 0 || len(r.Proof) > MaxProofLines || len(r.Checkpoint) == 0 || len(body) > MaxAddCheckpoint {
			t.Fatalf("ParseAddCheckpoint(%q) = %+v out of bounds", body, r)
		}
	})
}
