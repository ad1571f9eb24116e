package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkRSS runs `dso serve` as built, with its defaults (retrieval on,
// the built-in embedder, a library on disk), beside Go's
// httputil.ReverseProxy (the floor, testdata/floorproxy), both as real
// processes in front of one backend, and reports each one's resident
// memory idle (after one request) and at its peak under load: b.N
// non-streamed chats from 32 concurrent clients, then b.N/4 with 1 MiB
// bodies from 8. It builds both binaries, so it needs the go command.
//
//	go test -run xxx -bench RSS -benchtime 20000x ./cmd/dso
func BenchmarkRSS(b *testing.B) {
	dso, floor := buildBinaries(b)
	reply := []byte(`{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(reply)
	}))
	b.Cleanup(be.Close)

	rss := map[string][2]float64{}
	for _, p := range []struct {
		name string
		args []string
	}{
		{"floor", []string{floor, be.URL + "/v1"}},
		{"dso", []string{dso, "serve", "--listen", "127.0.0.1:0", "--backend", "openai:" + be.URL + "/v1"}},
	} {
		b.Run(p.name, func(b *testing.B) {
			cmd := exec.Command(p.args[0], p.args[1:]...)
			if p.name == "dso" {
				cmd.Args = append(cmd.Args, "--data", b.TempDir()) // a fresh library each run
			}
			var base string
			if p.name == "dso" {
				base = startServing(b, cmd)
			} else {
				base = startFloor(b, cmd)
			}
			chat := func(c *http.Client, body string) {
				resp, err := c.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
			small := `{"model":"m","messages":[{"role":"user","content":"How do I close a file in Go?"}]}`
			big := `{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("a", 1<<20) + `"}]}`
			chat(http.DefaultClient, small)
			if p.name == "dso" {
				awaitLibraryPrepared(b, base)
			}
			idle := procKiB(b, cmd.Process.Pid, "VmRSS")
			idleAnon := procKiB(b, cmd.Process.Pid, "RssAnon")
			load := func(clients, n int, body string) {
				var wg sync.WaitGroup
				next := make(chan struct{}, n)
				for range n {
					next <- struct{}{}
				}
				close(next)
				c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
				for range clients {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range next {
							chat(c, body)
						}
					}()
				}
				wg.Wait()
			}
			b.ResetTimer()
			load(32, b.N, small)
			load(8, max(b.N/4, 8), big)
			b.StopTimer()
			peak := procKiB(b, cmd.Process.Pid, "VmHWM")
			rss[p.name] = [2]float64{idle / 1024, peak / 1024}
			b.ReportMetric(idle/1024, "idle-MiB")
			b.ReportMetric(idleAnon/1024, "idle-anon-MiB") // the rest is the binary's pages
			b.ReportMetric(peak/1024, "peak-MiB")
			if f, ok := rss["floor"]; ok && p.name == "dso" {
				b.ReportMetric(idle/1024/f[0], "idle-vs-floor")
				b.ReportMetric(peak/1024/f[1], "peak-vs-floor")
			}
		})
	}
}

// awaitLibraryPrepared waits until dso's /readyz no longer reports the
// library's space as being prepared (the start's calibration runs in the
// background, and idle memory measured during it is not idle).
func awaitLibraryPrepared(b *testing.B, base string) {
	b.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(time.Minute)
	for {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			b.Fatal(err)
		}
		var rz struct {
			Retrieval struct{ State string }
		}
		err = json.NewDecoder(resp.Body).Decode(&rz)
		resp.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		if rz.Retrieval.State != "" && rz.Retrieval.State != "space_unavailable" {
			return
		}
		select {
		case <-tick.C:
		case <-deadline:
			b.Fatalf("the library was still being prepared after a minute (state %q)", rz.Retrieval.State)
		}
	}
}

// startFloor starts the floor proxy and returns the base URL it prints.
func startFloor(b *testing.B, cmd *exec.Cmd) string {
	b.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		b.Fatalf("the floor proxy did not start: %v", err)
	}
	return "http://" + strings.TrimSpace(line)
}

// procKiB reads a memory field (VmRSS, VmHWM) of a process, in KiB.
func procKiB(b *testing.B, pid int, field string) float64 {
	b.Helper()
	n, found, err := procStatus(fmt.Sprintf("/proc/%d/status", pid), field)
	if err != nil {
		b.Skipf("no /proc here: %v", err)
	}
	if !found {
		b.Fatalf("no %s in /proc/%d/status", field, pid)
	}
	return float64(n >> 10)
}
