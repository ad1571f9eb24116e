package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dso-proxy/dso/internal/overheadtest"
)

// BenchmarkSlowSockets is issue 28's slow-body attack on the served path:
// `dso serve` as built, with its defaults and a client key, while 6,000
// sockets from 127.0.0.1 send a keyed chat's headers and then a byte of
// body every 2 s (re-dialled when dso closes them, as an attacker would).
// Each iteration asks /healthz and sends a keyed chat from another address
// (127.0.0.2), 100 ms apart; it reports their latency (p50, max) and how
// many failed (an error or no 200 within 5 s). DSO_BENCH_BIN runs another
// build of dso instead (the figure before a change).
//
//	go test -run xxx -bench SlowSockets -benchtime 450x ./cmd/dso
func BenchmarkSlowSockets(b *testing.B) {
	const sockets = 6000
	dir := b.TempDir()
	bin := os.Getenv("DSO_BENCH_BIN") // another build, for a before figure
	if bin == "" {
		bin = filepath.Join(dir, "dso")
		if msg, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
			b.Fatalf("go build: %v\n%s", err, msg)
		}
	}
	be := httptest.NewServer(overheadtest.Backend(readPayload(b, "chat.json"), readPayload(b, "chat_stream.sse")))
	b.Cleanup(be.Close)
	cmd := exec.Command(bin, "serve", "--listen", "127.0.0.1:0", "--backend", "openai:"+be.URL+"/v1", "--data", filepath.Join(dir, "data"))
	cmd.Env = append(os.Environ(), "DSO_API_KEYS=sk-bench")
	base := startServing(b, cmd)
	addr := strings.TrimPrefix(base, "http://")

	head := "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer sk-bench\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
	dial := func() net.Conn {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return nil
		}
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := io.WriteString(c, head); err != nil {
			c.Close()
			return nil
		}
		return c
	}
	conns := make([]net.Conn, sockets)
	for i := range conns {
		conns[i] = dial()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // a byte every 2 s on each socket; a closed one is dialled again
		defer wg.Done()
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			for i, c := range conns {
				if c != nil {
					_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
					if _, err := c.Write([]byte(" ")); err == nil {
						continue
					}
					c.Close()
				}
				conns[i] = dial()
			}
		}
	}()
	b.Cleanup(func() {
		close(stop)
		wg.Wait()
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})

	other := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext,
	}}
	ask := func(method, path, body string) (time.Duration, bool) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer sk-bench")
		req.Header.Set("Content-Type", "application/json")
		t0 := time.Now()
		resp, err := other.Do(req)
		if err != nil {
			return time.Since(t0), false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return time.Since(t0), resp.StatusCode == http.StatusOK
	}
	var health, chat []time.Duration
	var healthFail, chatFail int
	b.ResetTimer()
	for range b.N {
		d, ok := ask("GET", "/healthz", "")
		health = append(health, d)
		if !ok {
			healthFail++
		}
		d, ok = ask("POST", "/v1/chat/completions", overheadtest.Chat)
		chat = append(chat, d)
		if !ok {
			chatFail++
		}
		time.Sleep(100 * time.Millisecond) // the probes' pace, not a synchronisation
	}
	b.StopTimer()
	ms := func(ds []time.Duration, q float64) float64 {
		s := slices.Clone(ds)
		slices.Sort(s)
		return float64(s[min(len(s)-1, int(q*float64(len(s))))]) / 1e6
	}
	b.ReportMetric(ms(health, 0.5), "healthz-p50-ms")
	b.ReportMetric(ms(health, 1), "healthz-max-ms")
	b.ReportMetric(ms(chat, 0.5), "chat-p50-ms")
	b.ReportMetric(ms(chat, 1), "chat-max-ms")
	b.ReportMetric(float64(healthFail), "healthz-failed")
	b.ReportMetric(float64(chatFail), "chat-failed")
	fmt.Fprintf(os.Stderr, "slow sockets: %d probes; healthz p50 %.1f ms max %.1f ms, %d failed; chat p50 %.1f ms max %.1f ms, %d failed\n",
		b.N, ms(health, 0.5), ms(health, 1), healthFail, ms(chat, 0.5), ms(chat, 1), chatFail)
}
