package proxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/proxy"
	"github.com/dso-proxy/dso/store"
)

// A page whose name was rebound to dso's address is refused in the
// route's shape, before it can plant an experience or read the traces;
// addresses, loopback names and the configured names are answered.
func TestRebindingHostRefused(t *testing.T) {
	be := newBackend(t, "openai")
	lib := newHashLibrary(t)
	fe := newFrontend(t, []config.Backend{openaiCfg(be)}, withRetrieval(lib, time.Second), func(o *proxy.Options, _ []config.Backend) {
		o.AllowedHosts = []string{"dso.internal", ".corp.example"}
	})
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(fe.URL, "http://"))
	exp := `{"text":"Planted by a web page."}`
	for _, tc := range []struct {
		host, method, path, body string
		want                     int
	}{
		{"rebind.evil.example:" + port, "POST", "/v1/experiences", exp, 403},
		{"rebind.evil.example", "GET", "/v1/traces", "", 403},
		{"REBIND.evil.example.:" + port, "POST", "/api/chat", `{"model":"m","messages":[]}`, 403},
		{"corp.example.evil.example", "GET", "/v1/experiences", "", 403},
		{"localhost.evil.example", "GET", "/v1/experiences", "", 403},
		{"127.0.0.1:" + port, "GET", "/v1/experiences", "", 200},
		{"[::1]:" + port, "GET", "/v1/experiences", "", 200},
		{"10.1.2.3", "GET", "/v1/experiences", "", 200},
		{"localhost:" + port, "GET", "/v1/experiences", "", 200},
		{"app.localhost", "GET", "/v1/experiences", "", 200},
		{"dso.internal:" + port, "GET", "/v1/experiences", "", 200},
		{"a.corp.example", "GET", "/v1/experiences", "", 200},
		{"dso-a:8080", "GET", "/healthz", "", 200}, // a load balancer's health check, by name
	} {
		req, _ := http.NewRequest(tc.method, fe.URL+tc.path, strings.NewReader(tc.body))
		req.Host = tc.host
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("Host %s, %s %s: %d %s; want %d", tc.host, tc.method, tc.path, resp.StatusCode, b, tc.want)
			continue
		}
		if tc.want != 403 {
			continue
		}
		var shape struct{ Error any }
		if json.Unmarshal(b, &shape) != nil || shape.Error == nil || !resp.Close {
			t.Errorf("Host %s: %s, close %v; want the route's error shape and the connection closed", tc.host, b, resp.Close)
		}
		if _, ollama := shape.Error.(string); ollama != strings.HasPrefix(tc.path, "/api/") {
			t.Errorf("Host %s, %s: error %s is not in the route's shape", tc.host, tc.path, b)
		}
	}
	if n := lib.Len(); n != 0 {
		t.Errorf("the library holds %d experiences; the rebinding page planted one", n)
	}
	if n := len(be.requests()); n != 0 {
		t.Errorf("the backend got %d requests from a refused host", n)
	}
}

// A body that arrives slower than the minimum rate is cut within a rate
// window with 408 and its connection closed, long before the body
// timeout; a body faster than the rate, however long it takes in all, is
// read.
func TestBodyRate(t *testing.T) {
	be := newBackend(t, "openai")
	fe := newFrontend(t, []config.Backend{openaiCfg(be)}, func(o *proxy.Options, _ []config.Backend) {
		o.BodyTimeout = time.Minute
		o.MinBodyRate, o.BodyRateWindow = 1000, 200*time.Millisecond // 200 bytes a window
	})
	addr := strings.TrimPrefix(fe.URL, "http://")
	body := chatBody(strings.Repeat("word ", 800))
	send := func(chunk int, every time.Duration) (*http.Response, string, time.Duration) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
		done := make(chan struct{})
		defer close(done)
		go func() { // the client's pace, until dso answers or it is sent
			for rest := body; rest != ""; {
				n := min(chunk, len(rest))
				if _, err := io.WriteString(c, rest[:n]); err != nil {
					return
				}
				rest = rest[n:]
				select {
				case <-done:
					return
				case <-time.After(every):
				}
			}
		}()
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		resp, b := readResponse(t, c)
		return resp, string(b), time.Since(start)
	}
	// 50 bytes a second: a quarter of a window's due in each window.
	resp, b, took := send(1, 20*time.Millisecond)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(b, "body_too_slow") || !resp.Close {
		t.Errorf("trickled body: %d %s, close %v; want 408 body_too_slow and the connection closed", resp.StatusCode, b, resp.Close)
	}
	if took > 20*time.Second {
		t.Errorf("trickled body cut after %v; the body timeout, not the rate, cut it", took)
	}
	// 8,000 bytes a second: above the rate, over about half a second.
	if resp, b, _ := send(400, 50*time.Millisecond); resp.StatusCode != http.StatusOK {
		t.Errorf("body above the rate: %d %s; want it read and answered", resp.StatusCode, b)
	}
	if n := len(be.requests()); n != 1 {
		t.Errorf("the backend got %d requests; want the fast one only", n)
	}
}

// Thousands of sockets from one address that send a keyed chat's headers
// and then hold their bodies take only that address's share: health and a
// keyed chat from another address are answered while they hold, the
// surplus connections are closed as soon as accepted, and the requests
// past the address's share in flight get 503 and lose their connection.
func TestSlowSocketsLeaveRoomForOthers(t *testing.T) {
	const (
		sockets   = 2000
		maxConns  = 400
		perClient = 100
		inFlight  = 64 // per client: 16
	)
	be := newBackend(t, "openai")
	fe := startFrontend(t, []config.Backend{openaiCfg(be)},
		func(p *proxy.Server, ln net.Listener) net.Listener { return p.Listener(ln, maxConns, perClient) },
		func(o *proxy.Options, _ []config.Backend) {
			o.APIKeys = []config.Secret{"sk-team"}
			o.MaxInFlight = inFlight
			o.MinBodyRate = -1 // the address share alone holds them off here
		})
	addr := strings.TrimPrefix(fe.URL, "http://")
	head := "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer sk-team\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	for range sockets {
		c, err := net.Dial("tcp", addr) // from 127.0.0.1
		if err != nil {
			t.Fatalf("after %d sockets: %v", len(conns), err)
		}
		_, _ = io.WriteString(c, head) // a closed one may refuse it
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}

	// Another client, from 127.0.0.2.
	other := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext,
	}}
	do := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, fe.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer sk-team")
		resp, err := other.Do(req)
		if err != nil {
			t.Fatalf("%s %s from another address while the sockets hold: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// Wait until dso has seen every socket: all but the share closed at
	// accept, and the requests past the share in flight refused.
	metric := func(m, name string) int {
		v := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\d+)`).FindStringSubmatch(m)
		if v == nil {
			return 0
		}
		n, _ := strconv.Atoi(v[1])
		return n
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		_, m := do("GET", "/metrics", "")
		closed, refused := metric(m, "dso_connections_refused_total"), metric(m, `dso_proxy_refused_total{bound="client"}`)
		if closed >= sockets-perClient && refused >= perClient-inFlight/4 {
			if open := metric(m, "dso_connections_open"); open > perClient+1 {
				t.Errorf("%d connections open; want at most the address's share, %d, and this one", open, perClient)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("dso did not get through the sockets: %d closed at accept, %d requests refused for the address's share\n%s", closed, refused, m)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if code, b := do("GET", "/healthz", ""); code != http.StatusOK {
		t.Errorf("healthz from another address: %d %s", code, b)
	}
	if code, b := do("POST", "/v1/chat/completions", chatBody("Are you there?")); code != http.StatusOK {
		t.Errorf("keyed chat from another address: %d %s", code, b)
	}
}

// A backend that promises 1,000 bytes and sends 100 gives the client a
// 502 in the route's shape, and that is not counted as a success: the
// attempt is "broken", no trace is kept and no trace id handed out. The
// same for a stream the backend breaks off after its head; a whole answer
// after them is counted ok and traced.
func TestTruncatedAnswerIsNoSuccess(t *testing.T) {
	be := newBackend(t, "openai")
	be.setOverride(func(w http.ResponseWriter, r *http.Request, body []byte) bool {
		switch {
		case strings.Contains(string(body), "cut whole"):
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", "1000")
			_, _ = io.WriteString(w, `{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Par`+strings.Repeat(" ", 20))
			w.(http.Flusher).Flush() // the head and 100 bytes go out
			panic(http.ErrAbortHandler)
		case strings.Contains(string(body), "cut stream"):
			w.Header().Set("Content-Type", "text/event-stream")
			for _, piece := range []string{"Par", "is"} {
				_, _ = io.WriteString(w, `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"`+piece+`"}}]}`+"\n\n")
				w.(http.Flusher).Flush()
			}
			panic(http.ErrAbortHandler)
		}
		return false
	})
	lib := newHashLibrary(t)
	fe := newFrontend(t, []config.Backend{openaiCfg(be)}, withRetrieval(lib, 2*time.Second))
	code, hdr, b := post(t, fe.URL+"/v1/chat/completions", chatBody("cut whole: the capital of France?"))
	if code != http.StatusBadGateway || hdr.Get(proxy.HeaderTraceID) != "" || !strings.Contains(string(b), `"error"`) {
		t.Errorf("cut answer: %d, trace id %q, %s; want 502 in OpenAI's shape and no trace id", code, hdr.Get(proxy.HeaderTraceID), b)
	}
	// The stream's head went out before the backend broke off: the client
	// sees a cut stream, and the trace id it got leads nowhere.
	req, _ := http.NewRequest("POST", fe.URL+"/v1/chat/completions", strings.NewReader(`{"model":"m","stream":true,"messages":[{"role":"user","content":"cut stream: the capital of France?"}]}`))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		_, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if code, hdr, b := post(t, fe.URL+"/v1/chat/completions", chatBody("The capital of France?")); code != 200 || hdr.Get(proxy.HeaderTraceID) == "" {
		t.Fatalf("whole answer: %d, trace id %q, %s", code, hdr.Get(proxy.HeaderTraceID), b)
	}
	_, _, m := send(t, http.MethodGet, fe.URL+"/metrics", "")
	for _, want := range []string{
		`dso_upstream_attempts_total{backend="openaia",outcome="broken"} 2`,
		`dso_upstream_attempts_total{backend="openaia",outcome="ok"} 1`,
	} {
		if !strings.Contains(string(m), want) {
			t.Errorf("metrics lack %s\n%s", want, regexp.MustCompile(`(?m)^dso_upstream_attempts_total.*$`).FindAllString(string(m), -1))
		}
	}
	fe.Close()
	fe.proxy.Close() // stores queued traces
	if n, err := lib.Store().(*store.SQLite).CountTraces(context.Background()); err != nil || n != 1 {
		t.Errorf("%d traces stored (%v); want only the whole answer's", n, err)
	}
}

// Behind a trusted proxy, X-Forwarded-For names the client, and each
// client has its own share of the requests in flight; an address the
// client put left of the proxy's own entry is not believed; from an
// untrusted address the header is ignored.
func TestTrustedProxiesNameTheClient(t *testing.T) {
	for _, trusted := range []bool{true, false} {
		t.Run(map[bool]string{true: "trusted", false: "untrusted"}[trusted], func(t *testing.T) {
			be, arrived, release := newHoldingBackend(t, 4)
			fe := newFrontend(t, []config.Backend{openaiCfg(be)}, func(o *proxy.Options, _ []config.Backend) {
				o.MaxInFlight, o.MaxInFlightPerClient = 8, 1
				if trusted {
					o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
				}
			})
			chat := func(xff, q string) (int, string) {
				req, _ := http.NewRequest("POST", fe.URL+"/v1/chat/completions", strings.NewReader(chatBody(q)))
				req.Header.Set("X-Forwarded-For", xff)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return 0, err.Error()
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			held := make(chan int, 1)
			go func() { code, _ := chat("203.0.113.5", "hold"); held <- code }()
			<-arrived // client .5 holds its one request
			other, _ := chat("203.0.113.6", "Hello?")
			spoof, _ := chat("203.0.113.6, 203.0.113.5", "Hello?")
			close(release)
			if code := <-held; code != 200 {
				t.Errorf("held request: %d", code)
			}
			wantOther := map[bool]int{true: 200, false: 503}[trusted]
			if other != wantOther || spoof != 503 {
				t.Errorf("another client: %d (want %d); the same client claiming another address: %d (want 503)", other, wantOther, spoof)
			}
		})
	}
}
