package library_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/store"
)

// hashSpace is a small local space; seed and dim make different spaces.
func hashSpace(dim int, seed uint64) library.Space {
	return library.Space{Name: fmt.Sprintf("hash:%d:%d", dim, seed), Embedder: library.EmbedFunc(providers.NewHashEmbedder(dim, seed).Embed)}
}

func openSpace(t *testing.T, dir string, sp library.Space) (*library.Library, *store.SQLite) {
	t.Helper()
	return openConfig(t, dir, library.Config{Space: sp})
}

// openConfig opens the store in dir and a prepared library over it with
// cfg (its Store set here).
func openConfig(t *testing.T, dir string, cfg library.Config) (*library.Library, *store.SQLite) {
	t.Helper()
	st, err := store.OpenDir(context.Background(), dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg.Store = st
	lib, err := library.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lib.Close() })
	if err := lib.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	return lib, st
}

func open(t *testing.T, dir string) (*library.Library, *store.SQLite) {
	return openSpace(t, dir, hashSpace(512, 3))
}

func vector(t *testing.T, lib *library.Library, text string) []float32 {
	t.Helper()
	v, err := lib.Vector(context.Background(), text)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// waitFor polls cond every 10ms for up to 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var all = library.NoGate

func TestLibrary(t *testing.T) {
	dir := t.TempDir()
	lib, st := open(t, dir)
	ctx := context.Background()
	if _, err := lib.Search(ctx, library.Query{Vector: vector(t, lib, "x")}); !errors.Is(err, library.ErrEmpty) {
		t.Fatalf("empty library: %v", err)
	}
	texts := []struct{ text, domain string }{
		{"Close files you wrote and check the error.", "code.go"},
		{"Use contexts with deadlines for outgoing requests.", "code.go"},
		{"Rest the dough before rolling it.", "cooking"},
	}
	var es []store.Experience
	for _, x := range texts {
		es = append(es, store.Experience{Text: x.text, Domain: x.domain, Confidence: 0.8})
	}
	got, created, err := lib.AddMany(ctx, es)
	if err != nil || len(got) != 3 || !created[0] || es[0].Code != nil {
		t.Fatalf("AddMany: %v %v (input modified: %v)", err, created, es[0].Code != nil)
	}
	if got[0].Space != lib.Space().Name || len(got[0].Code) != store.CodeSize {
		t.Errorf("stored code: space %q, %d bytes", got[0].Space, len(got[0].Code))
	}
	if _, c, _ := lib.Add(ctx, es[0]); c {
		t.Error("a duplicate was added")
	}

	q := vector(t, lib, "Close files you wrote and check the error.")
	res, err := lib.Search(ctx, library.Query{Vector: q, K: 2, MinRelevance: &all})
	if err != nil || len(res) != 2 || res[0].ID != got[0].ID || res[0].Text != texts[0].text {
		t.Fatalf("search: %+v %v", res, err)
	}
	if res, _ := lib.Search(ctx, library.Query{Vector: q, Domain: "cooking", MinRelevance: &all}); len(res) != 1 || res[0].Domain != "cooking" {
		t.Errorf("domain filter: %+v", res)
	}
	if res, _ := lib.Search(ctx, library.Query{Vector: q, MinConfidence: 0.9, MinRelevance: &all}); len(res) != 0 {
		t.Errorf("confidence filter: %+v", res)
	}
	retired := store.StatusRetired
	if _, err := lib.Update(ctx, got[0].ID, store.Update{Status: &retired}); err != nil {
		t.Fatal(err)
	}
	if res, _ := lib.Search(ctx, library.Query{Vector: q, K: 3, MinRelevance: &all}); len(res) != 2 || res[0].ID == got[0].ID {
		t.Errorf("retired returned: %+v", res)
	}
	if err := lib.Delete(ctx, got[1].ID); err != nil || lib.Len() != 2 {
		t.Errorf("delete: %v, len %d", err, lib.Len())
	}
	if sp, err := st.GetSpace(ctx, lib.Space().Name); err != nil || len(sp.Mean) != 512 {
		t.Errorf("space stats: %d dims, %v", len(sp.Mean), err)
	}

	// The index is rebuilt from the store on start, retired status included.
	lib2, _ := open(t, dir)
	if lib2.Len() != 2 || lib2.Stale() != 0 {
		t.Fatalf("rebuilt index holds %d, %d stale", lib2.Len(), lib2.Stale())
	}
	if res, _ := lib2.Search(ctx, library.Query{Vector: q, K: 3, MinRelevance: &all}); len(res) != 1 || res[0].Domain != "cooking" {
		t.Errorf("after restart: %+v", res)
	}
}

// The embedding cache answers a repeated text without calling the embedder.
func TestEmbedCache(t *testing.T) {
	var calls atomic.Int64
	h := providers.NewHashEmbedder(256, 5)
	sp := library.Space{Name: "counting", Embedder: library.EmbedFunc(func(ctx context.Context, texts []string) ([][]float32, error) {
		calls.Add(1)
		return h.Embed(ctx, texts)
	})}
	lib, _ := openSpace(t, t.TempDir(), sp)
	before := calls.Load()
	for i := 0; i < 3; i++ {
		vector(t, lib, "same text")
	}
	if n := calls.Load() - before; n != 1 {
		t.Errorf("embedder called %d times for one text; want 1", n)
	}
	if _, err := lib.Vector(context.Background(), "  "); !errors.Is(err, library.ErrNoText) {
		t.Errorf("blank text: %v", err)
	}
}

// lessons are distinct programming lessons; paraphrase rewords some.
var lessons = []string{
	"Close every file you open and check the error that Close returns.",
	"Pass a context with a deadline to every outgoing HTTP request.",
	"Wrap errors with fmt.Errorf and the %w verb so callers can inspect them.",
	"Never share a map between goroutines without a mutex.",
	"Use table-driven tests to cover many cases in one function.",
	"Prefer small interfaces declared where they are consumed.",
	"Run the race detector in continuous integration.",
	"Bound every queue and buffer so memory cannot grow without limit.",
	"Read the whole request body before forwarding it upstream.",
	"Return early on errors instead of nesting the happy path.",
	"Use a sync.WaitGroup to wait for goroutines to finish.",
	"Benchmark hot code with testing.B and report allocations.",
	"Store secrets in a type whose String method redacts them.",
	"Parse configuration once at start and validate every field.",
	"Flush streamed responses after every event so clients see them at once.",
	"Log with structured attributes instead of formatted strings.",
	"Make zero values useful so callers need no constructor.",
	"Cancel a context when the work it governs is done.",
	"Keep package names short and free of stutter.",
	"Document what every exported function returns on error.",
	"Use SQLite in WAL mode for concurrent readers and one writer.",
	"Retry only idempotent requests, and back off between attempts.",
	"Compare API keys in constant time to avoid timing attacks.",
	"Cap the size of a request body with http.MaxBytesReader.",
	"Use select with ctx.Done to stop a goroutine that waits on a channel.",
	"Avoid global state so tests can run in parallel.",
	"Check that a slice index is in range before using it.",
	"Prefer strings.Builder when concatenating in a loop.",
	"Sort results deterministically so output is reproducible.",
	"Use errors.Is to compare against sentinel errors.",
	"Reuse HTTP clients: each one keeps a pool of connections.",
	"Set read and write timeouts on every server you start.",
	"Validate user input at the edge and reject what you do not understand.",
	"Keep functions short enough to read without scrolling.",
	"Write the test that fails before fixing the bug.",
	"Do not ignore the error returned by json.Unmarshal.",
	"Use time.Duration values for timeouts, never bare integers.",
	"Close the response body of every HTTP request you make.",
	"Guard shared counters with sync/atomic or a mutex.",
	"Vendor nothing you cannot update; pin versions in go.mod.",
}

// The gate injects a reworded stored lesson and nothing for a question the
// library has no lesson about: neither one from another field nor one
// about the library's own subject (Go) that no lesson answers. The
// library is large enough (minGateLibrary, 32) for the gate to be
// calibrated on its own texts; TestGateCalibratesOnLibrary has libraries
// of real sentences whose texts raise it above the floor.
func TestGate(t *testing.T) {
	if len(lessons) < 32 {
		t.Fatalf("%d lessons: the gate is calibrated on the library only from 32", len(lessons))
	}
	lib, _ := open(t, t.TempDir())
	ctx := context.Background()
	es := make([]store.Experience, len(lessons))
	for i, l := range lessons {
		es[i] = store.Experience{Text: l, Domain: "code", Confidence: 0.8}
	}
	if _, _, err := lib.AddMany(ctx, es); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "calibration", func() bool { g, ok := lib.Gate(); return ok && g.Size == len(lessons) })
	g, _ := lib.Gate()
	// Every lesson (fewer than DefaultGateSample) was compared with the
	// rest, the anchors stand out from each other by a positive margin,
	// and searches are judged by the calibrated gate.
	if g.Sampled != len(lessons) || g.Floor <= 0 || g.Value >= 1 {
		t.Fatalf("gate %+v: want %d sampled, floor > 0, value < 1", g, len(lessons))
	}
	if got := lib.GateFor(library.Query{}); got != g.Value {
		t.Fatalf("searches are judged by %.3f; the calibrated gate is %.3f", got, g.Value)
	}
	related := map[string]string{
		"How do I close a file I opened and check the error from Close?": lessons[0],
		"should outgoing HTTP requests get a context with a deadline":    lessons[1],
		"how to cap the size of a request body":                          lessons[23],
	}
	for q, want := range related {
		res, err := lib.Search(ctx, library.Query{Vector: vector(t, lib, q)})
		if err != nil || len(res) == 0 || res[0].Text != want {
			t.Errorf("%q: %+v, %v; want %q injected", q, res, err, want)
		}
		for _, r := range res {
			if r.Relevance < g.Value {
				t.Errorf("%q: %q injected at relevance %.3f, below the gate %.3f", q, r.Text, r.Relevance, g.Value)
			}
		}
	}
	for _, q := range []string{
		"How do I bake sourdough bread?",
		"What is the capital of Mongolia?",
		"My knee hurts after running, should I rest?",
		// In the library's subject, but no lesson answers them.
		"How do I embed static files into a Go binary?",
		"What does iota mean inside a const block?",
		"How do I cross-compile a Go program for ARM?",
		"When should a method have a pointer receiver?",
	} {
		res, err := lib.Search(ctx, library.Query{Vector: vector(t, lib, q), IncludeGated: true})
		if err != nil || len(res) == 0 {
			t.Fatalf("%q: %v", q, err)
		}
		for _, r := range res {
			if r.Passed {
				t.Errorf("%q: %q passed the gate (relevance %.3f, gate %.3f)", q, r.Text, r.Relevance, g.Value)
			}
		}
		low := float32(-1)
		if res, _ := lib.Search(ctx, library.Query{Vector: vector(t, lib, q), MinRelevance: &low}); len(res) == 0 {
			t.Errorf("%q: a per-query gate of -1 let nothing through", q)
		}
	}
}

// A library opened in a new space re-embeds the stored texts into it,
// indexes them as they are done, and never mixes the two spaces' codes.
func TestSpaceChangeReembeds(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	old, st := open(t, dir)
	es := make([]store.Experience, len(lessons))
	for i, l := range lessons {
		es[i] = store.Experience{Text: l, Domain: "code", Confidence: 0.8}
	}
	if _, _, err := old.AddMany(ctx, es); err != nil {
		t.Fatal(err)
	}
	old.Close()

	sp := hashSpace(300, 11) // another model: other dims, other coordinates
	st2, err := store.OpenDir(ctx, dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	lib, err := library.New(ctx, library.Config{Store: st2, Space: sp})
	if err != nil {
		t.Fatal(err)
	}
	defer lib.Close()
	if lib.Len() != 0 || lib.Stale() != len(lessons) {
		t.Fatalf("new space at start: %d indexed, %d stale; want 0, %d", lib.Len(), lib.Stale(), len(lessons))
	}
	waitFor(t, "re-embedding", func() bool { return lib.Stale() == 0 && lib.Len() == len(lessons) })
	res, err := lib.Search(ctx, library.Query{Vector: vector(t, lib, "How do I close a file I opened and check the error from Close?")})
	if err != nil || len(res) == 0 || res[0].Text != lessons[0] {
		t.Fatalf("after re-embedding: %+v, %v", res, err)
	}
	err = st.EachExperience(ctx, func(e store.Experience) error {
		if e.Space != sp.Name {
			return fmt.Errorf("%q still in space %q", e.Text, e.Space)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// A space whose embedder fails is not ready, says why, and becomes ready
// once the embedder answers.
func TestSpaceNotReady(t *testing.T) {
	var up atomic.Bool
	h := providers.NewHashEmbedder(128, 2)
	sp := library.Space{Name: "flaky", Embedder: library.EmbedFunc(func(ctx context.Context, texts []string) ([][]float32, error) {
		if !up.Load() {
			return nil, errors.New("connection refused")
		}
		return h.Embed(ctx, texts)
	})}
	st, err := store.OpenDir(context.Background(), t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	lib, err := library.New(context.Background(), library.Config{Store: st, Space: sp})
	if err != nil {
		t.Fatal(err)
	}
	defer lib.Close()
	ctx := context.Background()
	if err := lib.Prepare(ctx); !errors.Is(err, library.ErrNotReady) {
		t.Fatalf("Prepare with a failing embedder: %v", err)
	}
	if err := lib.Ready(); !errors.Is(err, library.ErrNotReady) || err.Error() == library.ErrNotReady.Error() {
		t.Errorf("Ready: %v; want ErrNotReady with the cause", err)
	}
	if _, _, err := lib.AddMany(ctx, []store.Experience{{Text: "a lesson", Confidence: 0.5}}); !errors.Is(err, library.ErrNotReady) {
		t.Errorf("add while not ready: %v", err)
	}
	up.Store(true)
	if err := lib.Prepare(ctx); err != nil || lib.Ready() != nil {
		t.Fatalf("after recovery: %v, %v", err, lib.Ready())
	}
}

// A library whose codes are of an earlier space it can still embed in
// serves that space, with questions embedded there, until every text is
// coded in the new one; then it moves in one step. What is added during the
// move is found after it.
func TestMoveServesTheOldSpaceUntilDone(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	oldSpace := hashSpace(512, 3)
	old, _ := openSpace(t, dir, oldSpace)
	es := make([]store.Experience, len(lessons))
	for i, l := range lessons {
		es[i] = store.Experience{Text: l, Domain: "code", Confidence: 0.8}
	}
	if _, _, err := old.AddMany(ctx, es); err != nil {
		t.Fatal(err)
	}
	old.Close()

	release := make(chan struct{})
	h := providers.NewHashEmbedder(300, 11)
	newSpace := library.Space{Name: "hash:300:11", Embedder: library.EmbedFunc(func(ctx context.Context, texts []string) ([][]float32, error) {
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return h.Embed(ctx, texts)
	})}
	st, err := store.OpenDir(ctx, dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	lib, err := library.New(ctx, library.Config{Store: st, Space: newSpace, Previous: func(name string) (library.Space, bool) {
		return oldSpace, name == oldSpace.Name
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer lib.Close()
	if lib.Space().Name != oldSpace.Name || lib.Moving() != newSpace.Name || lib.Len() != len(lessons) || lib.Stale() != len(lessons) {
		t.Fatalf("at start: serving %s, moving to %q, %d indexed, %d to re-embed", lib.Space().Name, lib.Moving(), lib.Len(), lib.Stale())
	}
	if err := lib.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	q := "How do I close a file I opened and check the error from Close?"
	if res, err := lib.Search(ctx, library.Query{Vector: vector(t, lib, q)}); err != nil || len(res) == 0 || res[0].Text != lessons[0] {
		t.Fatalf("during the move: %+v, %v", res, err)
	}
	added := "Name goroutines' owners in a comment beside each go statement."
	if _, created, err := lib.Add(ctx, store.Experience{Text: added, Domain: "code", Confidence: 0.8}); err != nil || !created {
		t.Fatalf("add during the move: %v", err)
	}

	close(release)
	waitFor(t, "the move", func() bool { return lib.Moving() == "" })
	if lib.Space().Name != newSpace.Name || lib.Len() != len(lessons)+1 || lib.Stale() != 0 {
		t.Fatalf("after the move: serving %s, %d indexed, %d to re-embed", lib.Space().Name, lib.Len(), lib.Stale())
	}
	for q, want := range map[string]string{q: lessons[0], "Should I name the owner of each goroutine in a comment?": added} {
		if res, err := lib.Search(ctx, library.Query{Vector: vector(t, lib, q)}); err != nil || len(res) == 0 || res[0].Text != want {
			t.Errorf("after the move, %q: %+v, %v; want %q", q, res, err, want)
		}
	}
	err = st.EachExperience(ctx, func(e store.Experience) error {
		if e.Space != newSpace.Name {
			return fmt.Errorf("%q still in space %q", e.Text, e.Space)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	pending := 0
	st.PendingCodes(ctx, newSpace.Name, func(string, []byte) error { pending++; return nil })
	if pending != 0 {
		t.Errorf("%d pending codes left after the move", pending)
	}
}

type credKey struct{}

// A request that finds a preparation running, one that will fail for want
// of the credentials this request brings, has the space prepared with its
// credentials once the running one fails: it is not dropped.
func TestPrepareInBackgroundRetriesWithTheLaterRequest(t *testing.T) {
	h := providers.NewHashEmbedder(128, 2)
	started, release := make(chan struct{}), make(chan struct{})
	var once atomic.Bool
	sp := library.Space{Name: "creds", Embedder: library.EmbedFunc(func(ctx context.Context, texts []string) ([][]float32, error) {
		if ctx.Value(credKey{}) == nil {
			if once.CompareAndSwap(false, true) {
				close(started)
				<-release
			}
			return nil, errors.New("401: no api key")
		}
		return h.Embed(ctx, texts)
	})}
	st, err := store.OpenDir(context.Background(), t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	lib, err := library.New(context.Background(), library.Config{Store: st, Space: sp})
	if err != nil {
		t.Fatal(err)
	}
	defer lib.Close()
	lib.PrepareInBackground(context.Background())
	<-started
	lib.PrepareInBackground(context.WithValue(context.Background(), credKey{}, "sk-client"))
	close(release)
	deadline := time.Now().Add(10 * time.Second)
	for lib.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the space never became ready with the second request's credentials: %v", lib.Ready())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
