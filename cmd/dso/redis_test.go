package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/internal/redistest"
	"github.com/dso-proxy/dso/store"
)

// replicas is two dso serves sharing one Redis, as compose.yaml runs them.
type replicas struct {
	t      *testing.T
	redis  *redistest.Server
	st     *store.Redis // the test's own handle on the shared store
	be     *chatBackend
	beURL  string // the backend the replicas use: be's unless set
	base   [2]string
	client *http.Client
}

const replicaKeys = 16 // client keys: one voter each

func clientKey(i int) string { return fmt.Sprintf("client-key-%02d", i) }

func startReplicas(t *testing.T) *replicas {
	t.Helper()
	return startReplicasWith(t, "")
}

// startReplicasWith is startReplicas whose replicas use the backend at
// beURL ("": a chatBackend of their own).
func startReplicasWith(t *testing.T, beURL string) *replicas {
	t.Helper()
	srv := redistest.Start(t)
	st, err := store.OpenRedis(context.Background(), srv.URL(), store.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := &replicas{t: t, redis: srv, st: st, be: newChatBackend(t), beURL: beURL, client: &http.Client{Timeout: wait}}
	if r.beURL == "" {
		r.beURL = r.be.URL
	}
	t.Cleanup(r.client.CloseIdleConnections)
	for i := range r.base {
		r.base[i] = r.start()
	}
	return r
}

// start runs one more replica on the shared Redis and returns its URL.
func (r *replicas) start() string {
	r.t.Helper()
	cfg := config.Default()
	cfg.Data = r.t.TempDir() // unused: the library is in Redis
	cfg.Redis = config.Secret(r.redis.URL())
	cfg.SetBackends([]config.Backend{{Type: config.TypeOpenAI, URL: r.beURL + "/v1"}})
	for i := range replicaKeys {
		cfg.APIKeys = append(cfg.APIKeys, config.Secret(clientKey(i)))
	}
	minScore := 0.1
	cfg.Retrieval.MinScore = &minScore
	base, _ := startServe(r.t, cfg)
	return base
}

// do sends one request with client key i and returns status, headers and body.
func (r *replicas) do(method, url string, key int, body string) (int, http.Header, []byte, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+clientKey(key))
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

// chat asks replica n the question and returns the response headers.
func (r *replicas) chat(n, key int, q string) (http.Header, error) {
	b, _ := json.Marshal(map[string]any{"model": "m", "messages": []map[string]string{{"role": "user", "content": q}}})
	code, hdr, body, err := r.do("POST", r.base[n]+"/v1/chat/completions", key, string(b))
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("chat on replica %d: %d %s", n, code, body)
	}
	return hdr, nil
}

// add stores a lesson through replica n and returns its id.
func (r *replicas) add(n int, text string) string {
	r.t.Helper()
	b, _ := json.Marshal(map[string]any{"text": text, "domain": "code", "confidence": 0.8})
	deadline := time.Now().Add(wait)
	for {
		code, _, body, err := r.do("POST", r.base[n]+"/v1/experiences", 0, string(b))
		if err == nil && (code == http.StatusCreated || code == http.StatusOK) {
			var e struct{ ID string }
			json.Unmarshal(body, &e)
			return e.ID
		}
		// 503 while the replica's embedding space is being prepared.
		if time.Now().After(deadline) {
			r.t.Fatalf("add through replica %d: %d %s %v", n, code, body, err)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
	}
}

// injects reports whether replica n injects id for the question q.
func (r *replicas) injects(n int, id, q string) bool {
	hdr, err := r.chat(n, 0, q)
	return err == nil && strings.Contains(hdr.Get("X-DSO-Experiences"), id)
}

// poll waits until cond holds or the deadline passes.
func poll(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with a deadline
	}
	return time.Since(start)
}

var replicaLessons = []string{
	"Close every file you open and check the error that Close returns.",
	"Pass a context with a deadline to every outgoing HTTP request.",
	"Cap the size of a request body with http.MaxBytesReader.",
}

// An experience added through replica A is injected by replica B; votes
// from many clients through both are counted once each; a retirement or a
// delete through one hides the experience on the other within a second.
func TestReplicasShareOneLibrary(t *testing.T) {
	r := startReplicas(t)
	id := r.add(0, replicaLessons[0])
	took := poll(t, wait, "replica B injects what A added", func() bool { return r.injects(1, id, replicaLessons[0]) })
	t.Logf("replica B injected the experience added through A after %v", took)

	r.vote(id, replicaLessons[0])

	// Retirement, as learn does when the votes turn, through the store.
	other := r.add(0, replicaLessons[1])
	poll(t, wait, "replica B injects the second lesson", func() bool { return r.injects(1, other, replicaLessons[1]) })
	retired := store.StatusRetired
	if _, err := r.st.UpdateExperience(context.Background(), other, store.Update{Status: &retired}); err != nil {
		t.Fatal(err)
	}
	took = poll(t, time.Second, "replica B stops injecting a retired experience", func() bool { return !r.injects(1, other, replicaLessons[1]) })
	t.Logf("replica B hid the retired experience after %v", took)

	code, _, body, err := r.do("DELETE", r.base[0]+"/v1/experiences/"+id, 0, "")
	if err != nil || code != http.StatusOK {
		t.Fatalf("delete through A: %d %s %v", code, body, err)
	}
	took = poll(t, time.Second, "replica B stops injecting a deleted experience", func() bool { return !r.injects(1, id, replicaLessons[0]) })
	t.Logf("replica B hid the experience deleted through A after %v", took)
}

// vote has replicaKeys clients at once each chat through one replica and
// grade the answer through the other, twice, and checks that each counted
// once.
func (r *replicas) vote(id, q string) {
	t := r.t
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, replicaKeys)
	for i := range replicaKeys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- r.grade(i, id, q)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	tally, err := r.st.Tally(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if tally != (store.Tally{Up: replicaKeys}) {
		t.Errorf("tally = %+v; want %d up, one per client", tally, replicaKeys)
	}
}

// grade is one client: a chat through replica i%2, then the same grade
// through both replicas.
func (r *replicas) grade(i int, id, q string) error {
	hdr, err := r.chat(i%2, i, q)
	if err != nil {
		return err
	}
	if !strings.Contains(hdr.Get("X-DSO-Experiences"), id) {
		return fmt.Errorf("client %d: %s not injected (degraded %q)", i, id, hdr.Get("X-DSO-Degraded"))
	}
	fb := `{"trace_id":"` + hdr.Get("X-DSO-Trace-Id") + `","grade":1}`
	for _, n := range []int{1 - i%2, i % 2} {
		deadline := time.Now().Add(wait)
		for {
			code, _, body, err := r.do("POST", r.base[n]+"/v1/feedback", i, fb)
			if err == nil && (code == http.StatusOK || code == http.StatusAccepted) {
				break // 202: parked for the replica storing the trace
			}
			// The replica that answered stores its trace a moment after
			// the answer; until then the other does not know it.
			if err != nil || !strings.Contains(string(body), "unknown_trace") || time.Now().After(deadline) {
				return fmt.Errorf("client %d: feedback through replica %d: %d %s %v", i, n, code, body, err)
			}
			time.Sleep(5 * time.Millisecond) // polling a condition, with a deadline
		}
	}
	return nil
}

// Redis killed with SIGKILL mid-test: chat keeps answering on both
// replicas, uninjected and saying why; writes get 503 with Retry-After,
// never an acknowledgement; /readyz says the store is away. Restarted on
// the same port and directory, it has every acknowledged write, and both
// replicas recover without a restart and converge.
func TestReplicasSurviveRedisKill(t *testing.T) {
	r := startReplicas(t)
	id := r.add(0, replicaLessons[0])
	poll(t, wait, "replica B injects what A added", func() bool { return r.injects(1, id, replicaLessons[0]) })
	hdr, err := r.chat(1, 3, replicaLessons[0])
	if err != nil {
		t.Fatal(err)
	}
	trace := hdr.Get("X-DSO-Trace-Id")
	fb := `{"trace_id":"` + trace + `","grade":0}`
	poll(t, wait, "feedback acknowledged before the kill", func() bool {
		code, _, _, err := r.do("POST", r.base[1]+"/v1/feedback", 3, fb)
		return err == nil && code == http.StatusOK
	})

	r.redis.Kill(t)
	// Every chat of the outage says so, goes through uninjected (the
	// index may be stale), and its trace is kept until Redis returns.
	var outage []string
	for n := range r.base {
		for i := range 3 {
			hdr, err := r.chat(n, 0, replicaLessons[i%len(replicaLessons)])
			if err != nil {
				t.Fatalf("chat with Redis down: %v", err)
			}
			if got := hdr.Get("X-DSO-Degraded"); got != "store_unavailable" || hdr.Get("X-DSO-Experiences") != "" || hdr.Get("X-DSO-Trace-Id") == "" {
				t.Errorf("replica %d with Redis down: X-DSO-Degraded %q, experiences %q, trace %q; want store_unavailable, none, a trace id",
					n, got, hdr.Get("X-DSO-Experiences"), hdr.Get("X-DSO-Trace-Id"))
			}
			outage = append(outage, hdr.Get("X-DSO-Trace-Id"))
		}
	}
	body, _ := json.Marshal(map[string]any{"text": replicaLessons[2], "confidence": 0.8})
	for _, c := range []struct{ path, body string }{
		{"/v1/experiences", string(body)},
		{"/v1/feedback", fb},
	} {
		code, hdr, resp, err := r.do("POST", r.base[0]+c.path, 3, c.body)
		if err != nil {
			t.Fatal(err)
		}
		var shape struct {
			Error struct{ Code, Message string }
		}
		if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" ||
			json.Unmarshal(resp, &shape) != nil || shape.Error.Code != "store_unavailable" {
			t.Errorf("POST %s with Redis down: %d, Retry-After %q, %s; want 503 store_unavailable with Retry-After",
				c.path, code, hdr.Get("Retry-After"), resp)
		}
	}
	code, _, resp, err := r.do("GET", r.base[1]+"/readyz", 0, "")
	if err != nil || !strings.Contains(string(resp), `"store_unavailable"`) {
		t.Errorf("readyz with Redis down: %d %s %v; want the store named unavailable", code, resp, err)
	}

	r.redis.Restart(t)
	for n := range r.base {
		poll(t, wait, fmt.Sprintf("replica %d injects again after the restart", n), func() bool {
			return r.injects(n, id, replicaLessons[0])
		})
	}
	// What was acknowledged before the kill is there.
	if tally, err := r.st.Tally(context.Background(), id); err != nil || tally.Down != 1 {
		t.Errorf("tally after the restart = %+v, %v; want the acknowledged down vote", tally, err)
	}
	if _, err := r.st.GetTrace(context.Background(), trace); err != nil {
		t.Errorf("trace after the restart: %v", err)
	}
	for _, id := range outage {
		poll(t, wait, "the outage's trace "+id+" is stored once Redis is back", func() bool {
			_, err := r.st.GetTrace(context.Background(), id)
			return err == nil
		})
	}
	// Both replicas follow again: a write through each is seen by the other.
	second := r.add(1, replicaLessons[1])
	poll(t, wait, "replica A injects what B added after the restart", func() bool { return r.injects(0, second, replicaLessons[1]) })
	code, _, resp, err = r.do("DELETE", r.base[0]+"/v1/experiences/"+id, 0, "")
	if err != nil || code != http.StatusOK {
		t.Fatalf("delete after the restart: %d %s %v", code, resp, err)
	}
	poll(t, time.Second, "replica B hides what A deleted after the restart", func() bool { return !r.injects(1, id, replicaLessons[0]) })
	code, _, resp, err = r.do("GET", r.base[1]+"/readyz", 0, "")
	if err != nil || strings.Contains(string(resp), "store_unavailable") || strings.Contains(string(resp), "follow_error") {
		t.Errorf("readyz after the restart: %d %s %v; want the store ok and following", code, resp, err)
	}
}

// A replica started after the change stream was trimmed rebuilds its
// index from the store and serves everything.
func TestReplicaStartsAfterTrim(t *testing.T) {
	r := startReplicas(t)
	ids := make([]string, len(replicaLessons))
	for i, l := range replicaLessons {
		ids[i] = r.add(0, l)
	}
	if _, err := r.st.PruneChanges(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.st.Changes(context.Background(), 0, 0); err == nil {
		t.Fatal("the stream was not trimmed")
	}
	late := r.start()
	r.base[1] = late
	for i, l := range replicaLessons {
		poll(t, wait, "the late replica injects "+l, func() bool { return r.injects(1, ids[i], l) })
	}
}

// The shared store is named by the file's redis:, DSO_REDIS or --redis,
// later ones winning.
func TestServeRedisPrecedence(t *testing.T) {
	file := writeFile(t, "dso.yaml", "redis: redis://file:6379/0\n")
	for _, tt := range []struct {
		args []string
		env  string
		want string
	}{
		{nil, "", ""},
		{[]string{"--config", file}, "", "redis://file:6379/0"},
		{[]string{"--config", file}, "redis://env:6379/0", "redis://env:6379/0"},
		{[]string{"--config", file, "--redis", "redis://flag:6379/1"}, "redis://env:6379/0", "redis://flag:6379/1"},
	} {
		getenv := func(k string) string {
			if k == config.EnvRedis {
				return tt.env
			}
			return ""
		}
		cfg, err := loadServeConfig(tt.args, io.Discard, io.Discard, getenv)
		if err != nil || string(cfg.Redis) != tt.want {
			t.Errorf("%v, DSO_REDIS=%q: redis %q, %v; want %q", tt.args, tt.env, cfg.Redis, err, tt.want)
		}
	}
}

// dso import and export work on the shared store too.
func TestImportExportRedis(t *testing.T) {
	srv := redistest.Start(t)
	in := writeFile(t, "in.jsonl", `{"text":"Close every file you open.","domain":"code","confidence":0.9}`+"\n")
	var out, errb strings.Builder
	if code := run(context.Background(), []string{"import", "--redis", srv.URL(), "--embedder", "hash", "--file", in}, &out, &errb); code != 0 {
		t.Fatalf("import: exit %d: %s", code, errb.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"export", "--redis", srv.URL()}, &out, &errb); code != 0 {
		t.Fatalf("export: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "Close every file you open.") {
		t.Errorf("export from Redis = %q; want the imported experience", out.String())
	}
}

// Feedback that reaches the other replica while the one that answered
// has yet to store the trace (its answer is still streaming) is not
// refused: POST /v1/feedback answers 202 and header feedback says queued,
// and both grades are recorded once the trace is stored.
func TestFeedbackThroughTheOtherReplica(t *testing.T) {
	held, release := make(chan struct{}, 1), make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		chunk := func(delta string) {
			fmt.Fprintf(w, "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":%s,\"finish_reason\":null}]}\n\n", delta)
			w.(http.Flusher).Flush()
		}
		if !strings.Contains(string(body), `"stream":true`) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		chunk(`{"role":"assistant","content":"Close "}`)
		held <- struct{}{}
		<-release
		chunk(`{"content":"the body."}`)
		io.WriteString(w, "data: [DONE]\n\n")
	}))
	defer be.Close()
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer free() // before be.Close: a failing test must not leave the answer held
	r := startReplicasWith(t, be.URL)
	id := r.add(0, replicaLessons[0])
	poll(t, wait, "replica A injects the lesson", func() bool { return r.injects(0, id, replicaLessons[0]) })

	b, _ := json.Marshal(map[string]any{"model": "m", "stream": true, "messages": []map[string]string{{"role": "user", "content": replicaLessons[0]}}})
	req, _ := http.NewRequest("POST", r.base[0]+"/v1/chat/completions", strings.NewReader(string(b)))
	req.Header.Set("Authorization", "Bearer "+clientKey(1))
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	<-held
	trace := resp.Header.Get("X-DSO-Trace-Id")
	if trace == "" || !strings.Contains(resp.Header.Get("X-DSO-Experiences"), id) {
		t.Fatalf("streamed chat through A: trace %q, experiences %q; want a trace with the lesson", trace, resp.Header.Get("X-DSO-Experiences"))
	}

	// Through B, while A is still streaming the answer.
	code, _, body, err := r.do("POST", r.base[1]+"/v1/feedback", 1, `{"trace_id":"`+trace+`","grade":1}`)
	if err != nil || code != http.StatusAccepted || !strings.Contains(string(body), `"queued":true`) {
		t.Fatalf("feedback through B before A stored the trace: %d %s %v; want 202, queued", code, body, err)
	}
	hb, _ := json.Marshal(map[string]any{"model": "m", "messages": []map[string]string{{"role": "user", "content": "hello"}}})
	req, _ = http.NewRequest("POST", r.base[1]+"/v1/chat/completions", strings.NewReader(string(hb)))
	req.Header.Set("Authorization", "Bearer "+clientKey(2))
	req.Header.Set("X-DSO-Feedback", trace+"=down")
	hresp, err := r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, hresp.Body)
	hresp.Body.Close()
	if got := hresp.Header.Get("X-DSO-Feedback-Queued"); hresp.StatusCode != http.StatusOK || got != trace+"=queued" || hresp.Header.Get("X-DSO-Feedback-Rejected") != "" {
		t.Fatalf("header feedback through B: %s, queued %q, rejected %q; want it queued", hresp.Status, got, hresp.Header.Get("X-DSO-Feedback-Rejected"))
	}
	if tally, err := r.st.Tally(context.Background(), id); err != nil || tally != (store.Tally{}) {
		t.Fatalf("tally before the trace is stored: %+v, %v; want nothing recorded yet (else the test proves nothing)", tally, err)
	}

	free()
	io.Copy(io.Discard, resp.Body)
	poll(t, wait, "both grades recorded once A stored the trace", func() bool {
		tally, err := r.st.Tally(context.Background(), id)
		return err == nil && tally == (store.Tally{Up: 1, Down: 1})
	})
}

// Issue 25: dso serve started before Redis listens at once, is alive but
// not ready (/readyz 503, saying why), proxies chat uninjected (saying
// X-DSO-Degraded: store_unavailable), and tries Redis again until it answers; then /readyz is 200
// and chat goes through, traced in Redis. The wait is logged once.
func TestServeStartsBeforeRedis(t *testing.T) {
	srv := redistest.Reserve(t) // a port with no Redis on it yet
	be := newChatBackend(t)
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.Redis = config.Secret(srv.URL())
	cfg.SetBackends([]config.Backend{{Type: config.TypeOpenAI, URL: be.URL + "/v1"}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = ln.Addr().String()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	serveUntilStopped(t, ln, cfg, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	base := "http://" + ln.Addr().String()
	client := &http.Client{Timeout: wait}
	t.Cleanup(client.CloseIdleConnections)
	do := func(method, path, body string) (int, http.Header, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header, b
	}
	chat := `{"model":"m","messages":[{"role":"user","content":"Should I close response bodies?"}]}`

	code, _, body := do("GET", "/readyz", "")
	var rz struct {
		Ready bool
		Store struct{ State, Reason string }
	}
	if err := json.Unmarshal(body, &rz); err != nil || code != http.StatusServiceUnavailable || rz.Ready ||
		rz.Store.State != "store_unavailable" || rz.Store.Reason == "" {
		t.Errorf("/readyz before Redis: %d %s; want 503, not ready, the store unavailable and why", code, body)
	}
	if code, _, body := do("GET", "/healthz", ""); code != http.StatusOK {
		t.Errorf("/healthz before Redis: %d %s; want 200 (the process serves)", code, body)
	}
	if code, hdr, _ := do("POST", "/v1/experiences", `{"text":"Close response bodies."}`); code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Errorf("experience API before Redis: %d, Retry-After %q; want 503 with Retry-After", code, hdr.Get("Retry-After"))
	}
	// Chat goes through meanwhile, uninjected and saying why, as it does
	// when the store goes away later.
	code, hdr, body := do("POST", "/v1/chat/completions", chat)
	if code != http.StatusOK || hdr.Get("X-DSO-Degraded") != "store_unavailable" || !strings.Contains(string(body), `"content":"ok"`) {
		t.Errorf("chat before Redis: %d, degraded %q, %s; want the backend's answer, degraded store_unavailable", code, hdr.Get("X-DSO-Degraded"), body)
	}
	poll(t, wait, "dso tries Redis again, twice", func() bool {
		return strings.Count(logs.String(), "the store does not answer yet") >= 2
	})

	srv.Restart(t)
	poll(t, wait, "/readyz 200 once Redis answers", func() bool {
		code, _, _ := do("GET", "/readyz", "")
		return code == http.StatusOK
	})
	code, hdr, body = do("POST", "/v1/chat/completions", chat)
	if code != http.StatusOK || hdr.Get("X-DSO-Trace-Id") == "" {
		t.Fatalf("chat once Redis answers: %d %s; want 200 with a trace id", code, body)
	}
	st, err := store.OpenRedis(context.Background(), srv.URL(), store.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	poll(t, wait, "the chat's trace is stored in Redis", func() bool {
		_, err := st.GetTrace(context.Background(), hdr.Get("X-DSO-Trace-Id"))
		return err == nil
	})
	n := 0
	for _, w := range logs.warnings(t) {
		if strings.Contains(w, "store does not answer") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the wait was warned of %d times; want once", n)
	}
}

// A serve stopped while it waits for Redis stops cleanly, closing its
// listener.
func TestServeStopsWhileWaitingForRedis(t *testing.T) {
	srv := redistest.Reserve(t)
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.Redis = config.Secret(srv.URL())
	cfg.SetBackends([]config.Backend{{Type: config.TypeOpenAI, URL: newChatBackend(t).URL + "/v1"}})
	base, stop := startServe(t, cfg)
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before Redis: %d; want 503", resp.StatusCode)
	}
	stop() // fails the test unless serveOn returns nil in time
	if c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://")); err == nil {
		c.Close()
		t.Error("the listener is still open after the stop")
	}
}
