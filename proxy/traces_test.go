package proxy_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/learn"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/proxy"
	"github.com/dso-proxy/dso/store"
	_ "modernc.org/sqlite" // the driver a test takes the store's write lock with
)

// metricValue reads one unlabelled series from the frontend's /metrics.
func metricValue(t testing.TB, fe *frontend, name string) float64 {
	t.Helper()
	resp, err := http.Get(fe.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}

// Issue: under a burst most traces were dropped (the queue filled while
// each trace took its own transaction and sync), and feedback for those
// answers was refused as "unknown trace". Now every trace of a burst far
// longer than the trace queue is stored.
func TestTraceBurstStoresEveryTrace(t *testing.T) {
	const (
		requests = 2000
		workers  = 32
		queueLen = 64 // far shorter than the burst: the store keeps up, or the requests wait for it
	)
	be := newBackend(t, "openai")
	lib := newHashLibrary(t)
	fe := newFrontend(t, []config.Backend{openaiCfg(be)}, withRetrieval(lib, 2*time.Second), func(o *proxy.Options, _ []config.Backend) {
		o.TraceQueue = queueLen
	})

	ids := make(chan string, requests)
	work := make(chan int, requests)
	for i := range requests {
		work <- i
	}
	close(work)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range work {
				resp, err := client.Post(fe.URL+"/v1/chat/completions", "application/json", strings.NewReader(chatBody(fmt.Sprint("burst question ", i))))
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("chat %d: status %d", i, resp.StatusCode)
				}
				ids <- resp.Header.Get(proxy.HeaderTraceID)
			}
		})
	}
	wg.Wait()
	client.CloseIdleConnections()
	close(ids)
	fe.proxy.Close() // stores what is still queued

	ctx := context.Background()
	stored, missing := 0, 0
	for id := range ids {
		if _, err := lib.Store().(*store.SQLite).GetTrace(ctx, id); err != nil {
			missing++
			if missing <= 3 {
				t.Errorf("trace %q of the burst: %v", id, err)
			}
			continue
		}
		stored++
	}
	dropped := metricValue(t, fe, "dso_traces_dropped_total")
	t.Logf("%d requests, %d traces stored, %d missing, %v dropped, %v batches", requests, stored, missing, dropped, metricValue(t, fe, "dso_traces_batch_size_count"))
	if stored != requests || dropped != 0 {
		t.Errorf("%d of %d traces stored, %v dropped; want all stored, none dropped", stored, requests, dropped)
	}
}

// lockedLibrary is a library whose store a test can lock against writes,
// as a disk that has stopped keeping up would: lock takes the SQLite write
// lock from another connection, and the store's writes wait (they do not
// fail within the minute's busy timeout) until unlock. A test defers
// unlock, which runs before the frontend's Close waits for the store.
func lockedLibrary(t *testing.T) (lib *library.Library, lock, unlock func()) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.OpenDir(ctx, dir, store.Options{BusyTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	hash := providers.NewHashEmbedder(256, 1)
	lib, err = library.New(ctx, library.Config{Store: st, Space: library.Space{Name: "hash:256", Embedder: library.EmbedFunc(hash.Embed)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lib.Close() })
	if err := lib.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, store.FileName)+"?_pragma=busy_timeout(60000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var conn *sql.Conn
	lock = func() {
		t.Helper()
		if conn, err = db.Conn(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			t.Fatal(err)
		}
	}
	unlock = func() {
		t.Helper()
		if conn == nil {
			return
		}
		if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
			t.Fatal(err)
		}
		conn.Close()
		conn = nil
	}
	return lib, lock, unlock
}

// chatOnce sends one chat with its own client, so that a slow handler
// holding a connection does not hold the next request, and gives up after
// a while instead of hanging the test.
func chatOnce(t *testing.T, fe *frontend, q string, hdr ...string) (http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, fe.URL+"/v1/chat/completions", strings.NewReader(chatBody(q)))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("chat %q: %v", q, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("chat %q: reading the answer: %v", q, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("chat %q: %d %s", q, resp.StatusCode, body)
	}
	return resp.Header, body
}

// A request whose trace waits for room in a full queue has already sent
// its answer: the wait holds back the handler, not the client.
func TestTraceWaitComesAfterTheAnswer(t *testing.T) {
	be := newBackend(t, "openai")
	lib, lock, unlock := lockedLibrary(t)
	fe := newFrontend(t, []config.Backend{openaiCfg(be)}, withRetrieval(lib, 2*time.Second), func(o *proxy.Options, _ []config.Backend) {
		o.TraceQueue = 1        // the writer holds one trace and the queue one more
		o.TraceWait = time.Hour // longer than any test: only unlock ends the wait
	})
	want := golden(t, "openai/chat.json")
	lock()
	defer unlock()
	// Three traces, room for two while the store is locked: one of these
	// handlers is still waiting for room when its client has the answer.
	var ids []string
	for i := range 3 {
		hdr, body := chatOnce(t, fe, fmt.Sprint("question ", i))
		if string(body) != string(want) {
			t.Errorf("answer %d: %q; want %q", i, body, want)
		}
		ids = append(ids, hdr.Get(proxy.HeaderTraceID))
	}
	unlock()
	fe.proxy.Close()
	for _, id := range ids {
		if _, err := lib.Store().(*store.SQLite).GetTrace(context.Background(), id); err != nil {
			t.Errorf("trace %s: %v", id, err)
		}
	}
	if got := metricValue(t, fe, "dso_traces_dropped_total"); got != 0 {
		t.Errorf("%v traces dropped; want none", got)
	}
}

// warnLines returns the log's warnings with the message msg, and the sum of
// their counts.
func warnLines(t *testing.T, log string, msg string) (lines, sum int) {
	t.Helper()
	for _, l := range strings.Split(log, "\n") {
		if !strings.Contains(l, "level=WARN") || !strings.Contains(l, msg) {
			continue
		}
		lines++
		_, c, ok := strings.Cut(l, " count=")
		if !ok {
			t.Fatalf("warning without a count: %s", l)
		}
		c, _, _ = strings.Cut(c, " ")
		n, err := strconv.Atoi(c)
		if err != nil {
			t.Fatalf("count in %s: %v", l, err)
		}
		sum += n
	}
	return lines, sum
}

// Issue: each dropped trace wrote a warning (84 MB of log in 15 s). When
// the store cannot keep up and the wait for room is over, a trace is
// dropped, counted, and warned about at most once per interval; feedback
// for it is refused at once, as for an unknown trace.
func TestTraceDropsAreCountedAndWarnedOncePerInterval(t *testing.T) {
	be := newBackend(t, "openai")
	lib, lock, unlock := lockedLibrary(t)
	var logs syncBuffer
	var clock struct {
		sync.Mutex
		now time.Time
	}
	clock.now = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	advance := func(d time.Duration) { clock.Lock(); clock.now = clock.now.Add(d); clock.Unlock() }
	fe := newFrontend(t, []config.Backend{openaiCfg(be)}, withRetrieval(lib, 2*time.Second), func(o *proxy.Options, _ []config.Backend) {
		o.TraceQueue = 1
		o.TraceWait = -1 // drop at once: the test is of dropping
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		o.Learner = learn.NewLearner(learn.FeedbackConfig{Library: lib})
		proxy.WithClock(o, func() time.Time { clock.Lock(); defer clock.Unlock(); return clock.now })
	})
	const msg = "trace queue full"
	lock()
	defer unlock()
	var ids []string
	for i := range 20 {
		hdr, _ := chatOnce(t, fe, fmt.Sprint("question ", i))
		ids = append(ids, hdr.Get(proxy.HeaderTraceID))
	}
	dropped := metricValue(t, fe, "dso_traces_dropped_total")
	if dropped < 18 {
		t.Fatalf("%v of 20 traces dropped with room for 2; want at least 18", dropped)
	}
	if lines, n := warnLines(t, logs.String(), msg); lines != 1 || n != 1 {
		t.Errorf("%d warnings counting %d after %v drops in one interval; want 1 line, at the first", lines, n, dropped)
	}
	advance(10 * time.Second)
	hdr, _ := chatOnce(t, fe, "one more question")
	ids = append(ids, hdr.Get(proxy.HeaderTraceID))
	dropped = metricValue(t, fe, "dso_traces_dropped_total")
	if lines, n := warnLines(t, logs.String(), msg); lines != 2 || float64(n) != dropped {
		t.Errorf("%d warnings counting %d after %v drops in two intervals; want 2 lines counting every drop", lines, n, dropped)
	}

	// Feedback for a dropped trace is refused at once, while the store is
	// still locked.
	var lost string
	for _, id := range ids[2:] {
		hdr, _ := chatOnce(t, fe, "which traces are lost?", proxy.HeaderFeedback, id+"=up")
		if strings.Contains(hdr.Get(proxy.HeaderFeedbackRejected), "unknown trace") {
			lost = id
			break
		}
	}
	if lost == "" {
		t.Error("no feedback for a dropped trace was refused as for an unknown trace")
	}
	unlock()
	fe.proxy.Close()
	stored := 0
	for _, id := range ids {
		if _, err := lib.Store().(*store.SQLite).GetTrace(context.Background(), id); err == nil {
			stored++
		} else if !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
	}
	dropped = metricValue(t, fe, "dso_traces_dropped_total")
	if float64(stored)+dropped < float64(len(ids)) {
		t.Errorf("%d traces stored and %v dropped of %d; want every one of them accounted for", stored, dropped, len(ids))
	}
	if lines, n := warnLines(t, logs.String(), msg); float64(n) != dropped {
		t.Errorf("%d warnings counting %d; want them to count all %v drops", lines, n, dropped)
	}
}

// Header feedback never waits on the request path: not for a trace still
// being stored, nor for its own vote to be written. Each grade is checked
// at once and reported; the valid ones are recorded in the background.
func TestHeaderFeedbackDoesNotWait(t *testing.T) {
	be := newBackend(t, "openai")
	lib, lock, unlock := lockedLibrary(t)
	graded := make(chan error, maxGrades)
	fe := newFrontend(t, []config.Backend{openaiCfg(be)}, withRetrieval(lib, 2*time.Second), func(o *proxy.Options, _ []config.Backend) {
		o.Learner = notifyGrader{learn.NewLearner(learn.FeedbackConfig{Library: lib}), graded}
	})
	ctx := context.Background()
	const stored = "tr_stored_earlier"
	if err := lib.Store().(*store.SQLite).PutTrace(ctx, store.Trace{ID: stored, Query: "q", Answer: "a"}); err != nil {
		t.Fatal(err)
	}
	// With the store locked, this answer's trace cannot be stored: any
	// request that waited for it, or for a vote to be written, would hang.
	lock()
	defer unlock()
	hdr, _ := chatOnce(t, fe, "What is the capital city of Atlantis?")
	writing := hdr.Get(proxy.HeaderTraceID)

	tests := []struct {
		entry string
		want  string // "queued", "accepted", or what the rejection says
	}{
		{writing + "=1", "queued"},
		{stored + "=up", "accepted"},
		{"tr_unknown=1", "tr_unknown: unknown trace"},
		{"garbage", `"garbage" is not <trace-id>=<grade>`},
		{"=1", `"=1" is not <trace-id>=<grade>`},
		{writing + "=7", writing + `: grade "7" must be a number from 0 to 1`},
	}
	var entries []string
	for _, tt := range tests {
		entries = append(entries, tt.entry)
	}
	hdr, _ = chatOnce(t, fe, "Another question.", proxy.HeaderFeedback, strings.Join(entries, "; "))
	if _, err := lib.Store().(*store.SQLite).GetTrace(ctx, writing); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("trace %s while the store is locked: %v; want it still being written", writing, err)
	}
	accepted, queued, rejected := hdr.Get(proxy.HeaderFeedbackAccepted), hdr.Get(proxy.HeaderFeedbackQueued), hdr.Get(proxy.HeaderFeedbackRejected)
	wantAccepted, wantQueued := 0, []string{}
	for _, tt := range tests {
		switch tt.want {
		case "queued":
			wantAccepted++
			wantQueued = append(wantQueued, strings.TrimSuffix(tt.entry, "=1")+"=queued")
		case "accepted":
			wantAccepted++
		default:
			if !strings.Contains(rejected, tt.want) {
				t.Errorf("%s %q; want it to say %q for %q", proxy.HeaderFeedbackRejected, rejected, tt.want, tt.entry)
			}
		}
	}
	if accepted != strconv.Itoa(wantAccepted) {
		t.Errorf("%s %q; want %d", proxy.HeaderFeedbackAccepted, accepted, wantAccepted)
	}
	if want := strings.Join(wantQueued, "; "); queued != want {
		t.Errorf("%s %q; want %q", proxy.HeaderFeedbackQueued, queued, want)
	}
	if n := strings.Count(rejected, "; ") + 1; n != len(tests)-wantAccepted {
		t.Errorf("%s %q: %d reasons; want %d", proxy.HeaderFeedbackRejected, rejected, n, len(tests)-wantAccepted)
	}

	// Once the store takes writes again, the trace is stored and then both
	// votes are recorded.
	unlock()
	for range wantAccepted {
		if err := <-graded; err != nil {
			t.Errorf("recording a grade: %v", err)
		}
	}
	fbs, err := lib.Store().(*store.SQLite).PendingFeedback(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, fb := range fbs {
		got[fb.TraceID] = fb.Grade
	}
	if len(got) != 2 || got[writing] != 1 || got[stored] != 1 {
		t.Errorf("feedback recorded %v; want grade 1 for %s and %s", got, writing, stored)
	}
}

// maxGrades is room for every grade a test records.
const maxGrades = 16

// Traces that come within Options.TraceGather of one another are stored
// in one transaction (one sync to disk), not one each: a steady load paid
// a commit per request. Close stores a batch still gathering.
func TestTracesGatherIntoOneBatch(t *testing.T) {
	be := newBackend(t, "openai")
	lib := newHashLibrary(t)
	fe := newFrontend(t, []config.Backend{openaiCfg(be)}, withRetrieval(lib, 2*time.Second), func(o *proxy.Options, _ []config.Backend) {
		o.TraceGather = time.Hour // longer than the test: only Close ends it
	})
	var ids []string
	for i := range 5 {
		hdr, _ := chatOnce(t, fe, fmt.Sprint("question ", i))
		ids = append(ids, hdr.Get(proxy.HeaderTraceID))
	}
	ctx := context.Background()
	if _, err := lib.Store().(*store.SQLite).GetTrace(ctx, ids[0]); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("first trace while its batch gathers: %v; want it not stored yet", err)
	}
	fe.proxy.Close()
	for _, id := range ids {
		if _, err := lib.Store().(*store.SQLite).GetTrace(ctx, id); err != nil {
			t.Errorf("trace %s: %v", id, err)
		}
	}
	if n, sum := metricValue(t, fe, "dso_traces_batch_size_count"), metricValue(t, fe, "dso_traces_batch_size_sum"); n != 1 || sum != 5 {
		t.Errorf("%v batches of %v traces in all; want the 5 traces in 1 batch", n, sum)
	}
}

// Feedback never waits for a batch to finish gathering: POST /v1/feedback
// for a trace that is gathering has it stored at once, and so does header
// feedback, recorded in the background.
func TestFeedbackDoesNotWaitForTheGather(t *testing.T) {
	be := newBackend(t, "openai")
	lib := newHashLibrary(t)
	graded := make(chan error, maxGrades)
	fe := newFrontend(t, []config.Backend{openaiCfg(be)}, withRetrieval(lib, 2*time.Second), func(o *proxy.Options, _ []config.Backend) {
		o.TraceGather = time.Hour
		o.Learner = notifyGrader{learn.NewLearner(learn.FeedbackConfig{Library: lib}), graded}
	})
	hdr, _ := chatOnce(t, fe, "What is the capital city of Atlantis?")
	first := hdr.Get(proxy.HeaderTraceID)
	// Without the writer told, this would wait for the trace the 10s
	// feedback waits at most, and then refuse it as unknown.
	if code, _, body := post(t, fe.URL+"/v1/feedback", `{"trace_id":"`+first+`","grade":1}`); code != http.StatusOK {
		t.Fatalf("feedback for a gathering trace: %d %s; want 200", code, body)
	}
	if err := <-graded; err != nil {
		t.Fatal(err)
	}
	hdr, _ = chatOnce(t, fe, "And of Lemuria?")
	second := hdr.Get(proxy.HeaderTraceID)
	hdr, _ = chatOnce(t, fe, "Thanks.", proxy.HeaderFeedback, second+"=up")
	if got := hdr.Get(proxy.HeaderFeedbackQueued); got != second+"=queued" {
		t.Fatalf("%s %q; want %s=queued", proxy.HeaderFeedbackQueued, got, second)
	}
	select {
	case err := <-graded:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second): // the trace wait is 10s: well short of it
		t.Fatal("header feedback for a gathering trace not recorded within 5s")
	}
	fbs, err := lib.Store().(*store.SQLite).PendingFeedback(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(fbs) != 2 {
		t.Errorf("%d grades recorded; want 2", len(fbs))
	}
}
