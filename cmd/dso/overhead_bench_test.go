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

	"github.com/dso-proxy/dso/internal/overheadtest"
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
	be := httptest.NewServer(overheadtest.Backend(chat, stream))
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

// servedClient sends the recorded chats and checks every byte back.
type servedClient struct {
	http         *http.Client
	chat, stream []byte // what the backend answers
}

// do sends one chat to base and returns how long its answer took.
func (c servedClient) do(base string, streamed bool) (time.Duration, error) {
	body, want := overheadtest.Chat, c.chat
	if streamed {
		body, want = overheadtest.Stream, c.stream
	}
	t0 := time.Now()
	resp, err := c.http.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(body))
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

// servedLeg is one proc in one mode.
type servedLeg struct {
	p        servedProc
	streamed bool
}

func (l servedLeg) key() string {
	if l.streamed {
		return l.p.name + "/stream"
	}
	return l.p.name + "/nonstream"
}

// servedTally is what the rounds measured, by leg key.
type servedTally struct {
	mu                   sync.Mutex
	cpu, wall            map[string]time.Duration
	cpuRounds, rpsRounds map[string][]float64 // µs per request, requests per second
	lat                  map[string][]time.Duration
}

// servedRound is the number of requests in one leg's round.
const servedRound = 256

// runServedRounds runs b.N rounds through every proc and mode and reports.
func runServedRounds(b *testing.B, procs []servedProc, clients int, chat, stream []byte) {
	tr := &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512}
	b.Cleanup(tr.CloseIdleConnections)
	c := servedClient{http: &http.Client{Transport: tr}, chat: chat, stream: stream}
	var legs []servedLeg
	for _, p := range procs {
		legs = append(legs, servedLeg{p, false}, servedLeg{p, true})
	}
	for _, l := range legs {
		if _, err := c.do(l.p.base, l.streamed); err != nil { // verify before timing
			b.Fatalf("%s: %v", l.key(), err)
		}
	}
	t := &servedTally{cpu: map[string]time.Duration{}, wall: map[string]time.Duration{},
		cpuRounds: map[string][]float64{}, rpsRounds: map[string][]float64{}, lat: map[string][]time.Duration{}}
	b.ResetTimer()
	for i := range b.N {
		for j := range legs {
			t.round(b, c, legs[(i+j)%len(legs)], clients)
		}
	}
	b.StopTimer()
	t.report(b, clients, float64(b.N*servedRound))
}

// round sends one round through l from clients at once and tallies it.
func (t *servedTally) round(b *testing.B, c servedClient, l servedLeg, clients int) {
	k := l.key()
	var cpu0 time.Duration
	if l.p.pid != 0 {
		cpu0, _ = threadsCPU(l.p.pid)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for w := range clients {
		wg.Go(func() {
			var mine []time.Duration
			for n := w; n < servedRound; n += clients {
				took, err := c.do(l.p.base, l.streamed)
				if err != nil {
					b.Errorf("%s: %v", k, err)
					return
				}
				mine = append(mine, took)
			}
			t.mu.Lock()
			t.lat[k] = append(t.lat[k], mine...)
			t.mu.Unlock()
		})
	}
	wg.Wait()
	wall := time.Since(start)
	t.wall[k] += wall
	t.rpsRounds[k] = append(t.rpsRounds[k], servedRound/wall.Seconds())
	if l.p.pid != 0 {
		cpu1, err := threadsCPU(l.p.pid)
		if err != nil {
			b.Fatal(err)
		}
		t.cpu[k] += cpu1 - cpu0
		t.cpuRounds[k] = append(t.cpuRounds[k], float64((cpu1-cpu0).Microseconds())/servedRound)
	}
}

// report logs dso against each floor, n requests each.
func (t *servedTally) report(b *testing.B, clients int, n float64) {
	for _, mode := range []string{"nonstream", "stream"} {
		d := percentiles(t.lat["direct/"+mode])
		for _, floor := range []string{"floor-pooled", "floor"} {
			f, g := floor+"/"+mode, "dso/"+mode
			fc, gc := float64(t.cpu[f].Microseconds())/n, float64(t.cpu[g].Microseconds())/n
			fm, gm := overheadtest.Median(t.cpuRounds[f]), overheadtest.Median(t.cpuRounds[g])
			fr, gr := n/t.wall[f].Seconds(), n/t.wall[g].Seconds()
			fl, gl := percentiles(t.lat[f]), percentiles(t.lat[g])
			b.Logf("%s, %d client(s), dso vs %s: CPU per request %.1f µs vs %.1f µs (ratio %.2f; median round %.1f vs %.1f µs, ratio %.2f); %.0f req/s vs %.0f (ratio %.2f; median round %.2f); added p50 %.0f µs vs %.0f µs, p99 %.0f µs vs %.0f µs; %.0f requests each",
				mode, clients, floor, gc, fc, gc/fc, gm, fm, gm/fm, gr, fr, gr/fr, overheadtest.Median(t.rpsRounds[g])/overheadtest.Median(t.rpsRounds[f]),
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
