package proxy_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/proxy"
	"github.com/dso-proxy/dso/store"
)

// overheadRig is a fake OpenAI backend replaying recorded payloads from
// memory, and dso in front of it, with one client for both.
type overheadRig struct {
	backend, frontend *httptest.Server
	proxy             *proxy.Server
	client            *http.Client
	chat, stream      []byte // golden responses
}

const (
	benchChat   = `{"model":"gpt-4o","messages":[{"role":"user","content":"Capital of France?"}]}`
	benchStream = `{"model":"gpt-4o","messages":[{"role":"user","content":"Capital of France?"}],"stream":true,"stream_options":{"include_usage":true}}`
)

func newOverheadRig(tb testing.TB) *overheadRig { return newOverheadRigWith(tb, proxy.Retrieval{}) }

// newOverheadRigWith is newOverheadRig with retrieval (and so traces) as rt.
func newOverheadRigWith(tb testing.TB, rt proxy.Retrieval) *overheadRig {
	rig := &overheadRig{chat: golden(tb, "openai/chat.json"), stream: golden(tb, "openai/chat_stream.sse")}
	events := splitKeep(rig.stream, "\n\n")
	rig.backend = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
			http.NotFound(w, r)
			return
		}
		if !bytes.Contains(body, []byte(`"stream":true`)) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(rig.chat)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for _, ev := range events {
			_, _ = w.Write(ev)
			w.(http.Flusher).Flush()
		}
	}))
	tb.Cleanup(rig.backend.Close)
	router, err := providers.NewRouter([]config.Backend{{Name: "openai", Type: config.TypeOpenAI, URL: rig.backend.URL + "/v1", Timeout: time.Minute, Retries: -1}}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	p := proxy.New(proxy.Options{Router: router, Retrieval: rt})
	rig.proxy = p
	rig.frontend = httptest.NewServer(p)
	tb.Cleanup(func() { p.Close() })
	tb.Cleanup(rig.frontend.Close)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 512, 512
	rig.client = &http.Client{Transport: tr}
	tb.Cleanup(tr.CloseIdleConnections)
	return rig
}

// do sends one chat request to base and checks the response bytes against
// the golden file: a stream must arrive whole.
func (rig *overheadRig) do(base string, stream bool) error {
	body, want := benchChat, rig.chat
	if stream {
		body, want = benchStream, rig.stream
	}
	resp, err := rig.client.Post(base+"/v1/chat/completions", "application/json", bytes.NewBufferString(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, want) {
		return fmt.Errorf("status %d, %d bytes, ends %q; want 200 and the %d golden bytes", resp.StatusCode, len(got), tail(got), len(want))
	}
	return nil
}

func tail(b []byte) []byte {
	if len(b) > 40 {
		return b[len(b)-40:]
	}
	return b
}

// BenchmarkOverhead measures what dso adds to a request: the same requests
// straight to the backend and through dso, in one run, so the difference of
// the p50 and p99 latencies is dso's cost.
//
//	go test -run xxx -bench Overhead -benchtime 3000x ./proxy
func BenchmarkOverhead(b *testing.B) {
	rig := newOverheadRig(b)
	for _, route := range []struct{ name, base string }{{"direct", rig.backend.URL}, {"proxied", rig.frontend.URL}} {
		for _, mode := range []struct {
			name   string
			stream bool
		}{{"nonstream", false}, {"stream", true}} {
			b.Run(route.name+"/"+mode.name, func(b *testing.B) {
				if err := rig.do(route.base, mode.stream); err != nil {
					b.Fatal(err) // verify before timing
				}
				b.ReportAllocs()
				lat := make([]time.Duration, 0, b.N)
				start := time.Now()
				for b.Loop() {
					t0 := time.Now()
					if err := rig.do(route.base, mode.stream); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(t0))
				}
				elapsed := time.Since(start)
				reportLatency(b, lat, elapsed)
			})
		}
	}
}

func reportLatency(b *testing.B, lat []time.Duration, elapsed time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
}

// BenchmarkOverheadParallel is BenchmarkOverhead's throughput: many
// clients at once (GOMAXPROCS×8 goroutines).
func BenchmarkOverheadParallel(b *testing.B) {
	rig := newOverheadRig(b)
	for _, route := range []struct{ name, base string }{{"direct", rig.backend.URL}, {"proxied", rig.frontend.URL}} {
		for _, mode := range []struct {
			name   string
			stream bool
		}{{"nonstream", false}, {"stream", true}} {
			b.Run(route.name+"/"+mode.name, func(b *testing.B) {
				if err := rig.do(route.base, mode.stream); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.SetParallelism(8)
				start := time.Now()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := rig.do(route.base, mode.stream); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
			})
		}
	}
}

// TestNoLostStreamsUnderLoad counts streams that do not arrive whole when
// many clients stream through dso at once (DESIGN.md: a proxy that streams
// the request body upstream loses about 1 in 3,000 at 32 connections).
// Every stream must end with "data: [DONE]" and equal the golden bytes.
func TestNoLostStreamsUnderLoad(t *testing.T) {
	const clients = 32
	perClient := 120
	if testing.Short() {
		perClient = 5
	}
	// With a library, so that retrieval, injection and a trace per stream
	// are on the path under load too.
	hash := providers.NewHashEmbedder(256, 1)
	lib := newSpaceLibrary(t, t.TempDir(), library.Space{Name: "hash:256", Embedder: library.EmbedFunc(hash.Embed)})
	if _, _, err := lib.AddMany(context.Background(), []store.Experience{
		{Text: "Answer greetings briefly.", Confidence: 0.9},
		{Text: "Say hello back to a user who says hello.", Confidence: 0.9},
	}); err != nil {
		t.Fatal(err)
	}
	everything := -1.0 // inject on every request
	rig := newOverheadRigWith(t, proxy.Retrieval{Library: lib, Budget: 2 * time.Second, MinScore: &everything})
	if !bytes.HasSuffix(rig.stream, []byte("data: [DONE]\n\n")) {
		t.Fatalf("golden stream does not end with [DONE]: %q", tail(rig.stream))
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		lost   int
		sample error
	)
	for range clients {
		wg.Go(func() {
			for range perClient {
				if err := rig.do(rig.frontend.URL, true); err != nil {
					mu.Lock()
					lost++
					sample = err
					mu.Unlock()
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("load test did not finish")
	}
	if lost > 0 {
		t.Fatalf("%d of %d streams lost or incomplete; e.g. %v", lost, clients*perClient, sample)
	}
	rig.proxy.Close() // stores the traces still queued
	n, err := lib.Store().CountTraces(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != clients*perClient {
		t.Errorf("%d traces stored for %d streams", n, clients*perClient)
	}
	t.Logf("%d streams through dso at %d connections, with retrieval and traces, all complete", clients*perClient, clients)
}
