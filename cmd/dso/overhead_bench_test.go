package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkServedOverhead is the overhead comparison on the served path:
// `dso serve` as built, with its defaults (retrieval on over an empty
// library on disk, traces stored, a line logged per request at info),
// beside two floors built from testdata/floorproxy — Go's
// httputil.ReverseProxy stock, which keeps 2 idle connections to its
// backend, and pooled, with 64 like dso — all real processes in front of
// one backend in this process that answers with the recorded OpenAI
// payloads. Each iteration sends a round of requests through every proxy
// and mode in turn (the order rotating, so outside load falls on all
// alike) from the clients at once, and charges each proxy process the
// CPU its threads ran in that round (/proc/PID/task/*/schedstat): no
// client or backend CPU to subtract. It reports dso's ratios to each
// floor over all rounds and in the median round: CPU per request, RPS,
// and the latency the proxy adds to the backend's at p50 and p99.
//
//	go test -run xxx -bench ServedOverhead -benchtime 40x ./cmd/dso
func BenchmarkServedOverhead(b *testing.B) {
	dsoBin, floorBin := buildBinaries(b)
	chat := readPayload(b, "chat.json")
	stream := readPayload(b, "chat_stream.sse")
	events := bytes.SplitAfter(stream, []byte("\n\n"))
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !bytes.Contains(body, []byte(`"stream":true`)) {
			w.Header().Set("Content-Type", "application/json")
			w.Write(chat)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for _, ev := range events {
			w.Write(ev)
			w.(http.Flusher).Flush()
		}
	}))
	b.Cleanup(be.Close)

	procs := []servedProc{{name: "direct", base: be.URL}}
	for _, p := range []struct {
		name string
		args []string
	}{
		{"floor", []string{floorBin, be.URL}},
		{"floor-pooled", []string{floorBin, "-pool", "64", be.URL}},
		{"dso", []string{dsoBin, "serve", "--listen", "127.0.0.1:0", "--backend", "openai:" + be.URL + "/v1", "--data", b.TempDir()}},
	} {
		cmd := exec.Command(p.args[0], p.args[1:]...)
		var base string
		if p.name == "dso" {
			base = startServing(b, cmd)
		} else {
			base = startFloor(b, cmd)
		}
		procs = append(procs, servedProc{name: p.name, base: base, pid: cmd.Process.Pid})
	}
	if _, err := threadsCPU(procs[1].pid); err != nil {
		b.Skipf("no per-thread CPU times here: %v", err)
	}
	for _, clients := range []int{32, 1} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			runServedRounds(b, procs, clients, chat, stream)
		})
	}
}

// servedProc is a way to the backend: a proxy process, or none (direct).
type servedProc struct {
	name, base string
	pid        int // 0: no process of its own
}

// runServedRounds runs b.N rounds through every proc and mode and reports.
func runServedRounds(b *testing.B, procs []servedProc, clients int, chat, stream []byte) {
	const round = 256
	const (
		chatBody   = `{"model":"gpt-4o","messages":[{"role":"user","content":"Capital of France?"}]}`
		streamBody = `{"model":"gpt-4o","messages":[{"role":"user","content":"Capital of France?"}],"stream":true,"stream_options":{"include_usage":true}}`
	)
	tr := &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512}
	b.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	do := func(base string, streamed bool) (time.Duration, error) {
		body, want := chatBody, chat
		if streamed {
			body, want = streamBody, stream
		}
		t0 := time.Now()
		resp, err := client.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			return 0, err
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(t0)
		if err != nil {
			return 0, err
		}
		if resp.StatusCode != http.StatusOK || !bytes.Equal(got, want) {
			return 0, fmt.Errorf("status %d, %d bytes; want 200 and the %d recorded bytes", resp.StatusCode, len(got), len(want))
		}
		return took, nil
	}
	type leg struct {
		p        servedProc
		streamed bool
	}
	var legs []leg
	for _, p := range procs {
		legs = append(legs, leg{p, false}, leg{p, true})
	}
	key := func(l leg) string {
		if l.streamed {
			return l.p.name + "/stream"
		}
		return l.p.name + "/nonstream"
	}
	for _, l := range legs {
		if _, err := do(l.p.base, l.streamed); err != nil { // verify before timing
			b.Fatalf("%s: %v", key(l), err)
		}
	}
	cpuRounds, rpsRounds := map[string][]float64{}, map[string][]float64{}
	cpu, wall := map[string]time.Duration{}, map[string]time.Duration{}
	lat := map[string][]time.Duration{}
	var mu sync.Mutex
	b.ResetTimer()
	for i := range b.N {
		for j := range legs {
			l := legs[(i+j)%len(legs)]
			k := key(l)
			var cpu0 time.Duration
			if l.p.pid != 0 {
				cpu0, _ = threadsCPU(l.p.pid)
			}
			start := time.Now()
			var wg sync.WaitGroup
			for c := range clients {
				wg.Go(func() {
					var mine []time.Duration
					for n := c; n < round; n += clients {
						took, err := do(l.p.base, l.streamed)
						if err != nil {
							b.Errorf("%s: %v", k, err)
							return
						}
						mine = append(mine, took)
					}
					mu.Lock()
					lat[k] = append(lat[k], mine...)
					mu.Unlock()
				})
			}
			wg.Wait()
			w := time.Since(start)
			wall[k] += w
			rpsRounds[k] = append(rpsRounds[k], round/w.Seconds())
			if l.p.pid != 0 {
				cpu1, err := threadsCPU(l.p.pid)
				if err != nil {
					b.Fatal(err)
				}
				cpu[k] += cpu1 - cpu0
				cpuRounds[k] = append(cpuRounds[k], float64((cpu1-cpu0).Microseconds())/round)
			}
		}
	}
	b.StopTimer()
	n := float64(b.N * round)
	for _, mode := range []string{"nonstream", "stream"} {
		d := percentiles(lat["direct/"+mode])
		for _, floor := range []string{"floor-pooled", "floor"} {
			f, g := floor+"/"+mode, "dso/"+mode
			fc, gc := float64(cpu[f].Microseconds())/n, float64(cpu[g].Microseconds())/n
			fm, gm := median(cpuRounds[f]), median(cpuRounds[g])
			fr, gr := n/wall[f].Seconds(), n/wall[g].Seconds()
			fl, gl := percentiles(lat[f]), percentiles(lat[g])
			b.Logf("%s, %d client(s), dso vs %s: CPU per request %.1f µs vs %.1f µs (ratio %.2f; median round %.1f vs %.1f µs, ratio %.2f); %.0f req/s vs %.0f (ratio %.2f; median round %.2f); added p50 %.0f µs vs %.0f µs, p99 %.0f µs vs %.0f µs; %.0f requests each",
				mode, clients, floor, gc, fc, gc/fc, gm, fm, gm/fm, gr, fr, gr/fr, median(rpsRounds[g])/median(rpsRounds[f]),
				us(gl[0]-d[0]), us(fl[0]-d[0]), us(gl[1]-d[1]), us(fl[1]-d[1]), n)
			b.ReportMetric(gm/fm, "dso-"+mode+"-median-cpu-vs-"+floor)
		}
	}
}

// percentiles are the p50 and p99 of ds.
func percentiles(ds []time.Duration) [2]time.Duration {
	if len(ds) == 0 {
		return [2]time.Duration{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return [2]time.Duration{s[len(s)/2], s[len(s)*99/100]}
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// threadsCPU is the time a process's threads have run on a CPU, from
// each one's schedstat (nanoseconds, unlike stat's clock ticks).
func threadsCPU(pid int) (time.Duration, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var sum time.Duration
	for _, t := range tasks {
		raw, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
		if err != nil {
			continue // the thread ended
		}
		f := strings.Fields(string(raw))
		if len(f) == 0 {
			return 0, fmt.Errorf("%s/%s/schedstat: empty", dir, t.Name())
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s/%s/schedstat: %w", dir, t.Name(), err)
		}
		sum += time.Duration(ns)
	}
	return sum, nil
}

// buildBinaries builds dso and the floor proxy into a temporary directory.
func buildBinaries(b *testing.B) (dso, floor string) {
	dir := b.TempDir()
	build := func(name, pkg string) string {
		out := filepath.Join(dir, name)
		if msg, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
			b.Fatalf("go build %s: %v\n%s", pkg, err, msg)
		}
		return out
	}
	return build("dso", "."), build("floorproxy", "./testdata/floorproxy")
}

// readPayload reads a recorded OpenAI payload, the proxy package's.
func readPayload(b *testing.B, name string) []byte {
	raw, err := os.ReadFile(filepath.Join("..", "..", "proxy", "testdata", "openai", name))
	if err != nil {
		b.Fatal(err)
	}
	return raw
}
