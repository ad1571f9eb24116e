package proxy_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/internal/overheadtest"
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

func newOverheadRig(tb testing.TB) *overheadRig { return newOverheadRigWith(tb, proxy.Retrieval{}) }

// newOverheadRigWith is newOverheadRig with retrieval (and so traces) as rt.
func newOverheadRigWith(tb testing.TB, rt proxy.Retrieval) *overheadRig {
	rig := &overheadRig{chat: golden(tb, "openai/chat.json"), stream: golden(tb, "openai/chat_stream.sse")}
	rig.backend = httptest.NewServer(overheadtest.Backend(rig.chat, rig.stream))
	tb.Cleanup(rig.backend.Close)
	router, err := providers.NewRouter([]config.Backend{{Name: "openai", Type: config.TypeOpenAI, URL: rig.backend.URL + "/v1", Timeout: time.Minute, Retries: -1}}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	// A line per request at info, as dso serve logs by default (formatted
	// as serve formats it; written to the null device, not a pipe).
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { devNull.Close() })
	opts := proxy.Options{Router: router, Retrieval: rt, Logger: slog.New(slog.NewJSONHandler(devNull, nil))}
	p := proxy.New(opts)
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
	body, want := overheadtest.Chat, rig.chat
	if stream {
		body, want = overheadtest.Stream, rig.stream
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

// route is a way to the backend the overhead benchmarks compare.
type route struct{ name, base string }

// overheadRoutes is the rig and the routes every overhead benchmark
// compares: straight to the backend, through a bare httputil.ReverseProxy
// (the Go floor), through dso, and through dso with retrieval on over an
// empty library. The rig's client sends on all of them.
func overheadRoutes(b *testing.B) (*overheadRig, []route) {
	rig := newOverheadRig(b)
	u, _ := url.Parse(rig.backend.URL)
	floor := httptest.NewServer(overheadtest.BodyFirst(httputil.NewSingleHostReverseProxy(u)))
	b.Cleanup(floor.Close)
	withLib := newOverheadRigWith(b, proxy.Retrieval{Library: newHashLibrary(b), Budget: time.Second})
	return rig, []route{{"direct", rig.backend.URL}, {"floor", floor.URL}, {"dso", rig.frontend.URL}, {"dso+library", withLib.frontend.URL}}
}

// BenchmarkOverhead measures what dso adds to a request: the same requests
// straight to the backend, through a bare httputil.ReverseProxy (the Go
// floor), through dso, and through dso with retrieval on over an empty
// library, in one run. Besides latency it reports the process's CPU time
// per request (client and backend included, the same for every route, so
// differences are the proxies'), and logs dso's ratios to the floor.
// dso here is the proxy package in this process, logging as serve does,
// so that a profile sees it beside the client and backend; the served
// figure (dso serve as built, each proxy its own process) is cmd/dso's
// BenchmarkServedOverhead.
//
//	go test -run xxx -bench 'Overhead$' -benchtime 3000x ./proxy
func BenchmarkOverhead(b *testing.B) {
	rig, routes := overheadRoutes(b)
	cpu := map[string]float64{}
	p50 := map[string]float64{}
	for _, rt := range routes {
		for _, mode := range []struct {
			name   string
			stream bool
		}{{"nonstream", false}, {"stream", true}} {
			b.Run(rt.name+"/"+mode.name, func(b *testing.B) {
				if err := rig.do(rt.base, mode.stream); err != nil {
					b.Fatal(err) // verify before timing
				}
				b.ReportAllocs()
				lat := make([]time.Duration, 0, b.N)
				start, cpu0 := time.Now(), processCPU()
				for b.Loop() {
					t0 := time.Now()
					if err := rig.do(rt.base, mode.stream); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(t0))
				}
				elapsed := time.Since(start)
				perReq := float64((processCPU() - cpu0).Microseconds()) / float64(len(lat))
				b.ReportMetric(perReq, "cpu-µs/op")
				p50[rt.name+"/"+mode.name] = reportLatency(b, lat, elapsed)
				cpu[rt.name+"/"+mode.name] = perReq
			})
		}
	}
	for _, mode := range []string{"nonstream", "stream"} {
		d, f := cpu["direct/"+mode], cpu["floor/"+mode]
		for _, r := range []string{"dso", "dso+library"} {
			if f-d > 0 {
				b.Logf("%s %s: CPU added per request %.1f µs vs the floor's %.1f µs (ratio %.2f); added p50 %.0f µs vs %.0f µs",
					r, mode, cpu[r+"/"+mode]-d, f-d, (cpu[r+"/"+mode]-d)/(f-d), p50[r+"/"+mode]-p50["direct/"+mode], p50["floor/"+mode]-p50["direct/"+mode])
			}
		}
	}
}

// processCPU is the CPU time this process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportLatency reports p50, p99 and throughput, and returns the p50 in µs.
func reportLatency(b *testing.B, lat []time.Duration, elapsed time.Duration) float64 {
	if len(lat) == 0 {
		return 0
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
	return pct(0.50)
}

// TestNoLostStreamsUnderLoad counts streams that do not arrive whole when
// many clients stream through dso at once (DESIGN.md: a proxy that streams
// the request body upstream loses about 1 in 3,000 at 32 connections).
// Every stream must end with "data: [DONE]" and equal the golden bytes,
// and every stream must leave its trace. 3,840 streams catch a 1-in-3,000
// loss 72% of the time; BenchmarkNoLostStreamsUnderLoad sends enough to
// catch it 99% of the time.
func TestNoLostStreamsUnderLoad(t *testing.T) {
	perClient := 120
	if testing.Short() {
		perClient = 5
	}
	streamsUnderLoad(t, 32, perClient)
}

// BenchmarkNoLostStreamsUnderLoad is TestNoLostStreamsUnderLoad large
// enough to catch a 1-in-3,000 loss with high probability: 15,040 streams
// per iteration (a loss that rare goes unseen in all of them with
// probability e^-5, under 1%).
//
//	go test -run xxx -bench NoLostStreamsUnderLoad -benchtime 1x ./proxy
func BenchmarkNoLostStreamsUnderLoad(b *testing.B) {
	for b.Loop() {
		streamsUnderLoad(b, 32, 470)
	}
	b.ReportMetric(32*470, "streams/op")
}

// streamsUnderLoad streams perClient answers on each of clients
// connections at once through dso with retrieval, injection and traces on,
// and fails tb on any stream that is lost or incomplete, or any trace not
// stored.
func streamsUnderLoad(tb testing.TB, clients, perClient int) {
	// With a library, so that retrieval, injection and a trace per stream
	// are on the path under load too.
	lib := newHashLibrary(tb)
	if _, _, err := lib.AddMany(context.Background(), []store.Experience{
		{Text: "Answer greetings briefly.", Confidence: 0.9},
		{Text: "Say hello back to a user who says hello.", Confidence: 0.9},
	}); err != nil {
		tb.Fatal(err)
	}
	everything := -1.0 // inject on every request
	rig := newOverheadRigWith(tb, proxy.Retrieval{Library: lib, Budget: 2 * time.Second, MinScore: &everything})
	if !bytes.HasSuffix(rig.stream, []byte("data: [DONE]\n\n")) {
		tb.Fatalf("golden stream does not end with [DONE]: %q", tail(rig.stream))
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
	case <-time.After(5 * time.Minute):
		tb.Fatal("load test did not finish")
	}
	if lost > 0 {
		tb.Fatalf("%d of %d streams lost or incomplete; e.g. %v", lost, clients*perClient, sample)
	}
	rig.proxy.Close() // stores the traces still queued
	n, err := lib.Store().(*store.SQLite).CountTraces(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	if n != clients*perClient {
		tb.Errorf("%d traces stored for %d streams", n, clients*perClient)
	}
	tb.Logf("%d streams through dso at %d connections, with retrieval and traces, all complete", clients*perClient, clients)
}
