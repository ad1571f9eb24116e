package proxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/proxy"
)

// newHoldingBackend is an OpenAI backend that holds every chat whose body
// says "hold": it says so on arrived (room for n) and answers once release
// is closed.
func newHoldingBackend(t *testing.T, n int) (be *backend, arrived, release chan struct{}) {
	be = newBackend(t, "openai")
	arrived, release = make(chan struct{}, n), make(chan struct{})
	be.setOverride(func(w http.ResponseWriter, r *http.Request, body []byte) bool {
		if strings.Contains(string(body), "hold") {
			arrived <- struct{}{}
			<-release
		}
		return false
	})
	return be, arrived, release
}

// rawRequest writes head (and part of a body) on a new connection to
// addr and returns the response dso sends, read within limit.
func rawRequest(t *testing.T, addr, head string, limit time.Duration) (*http.Response, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(limit))
	return readResponse(t, c)
}

// readResponse reads one response from c, within c's read deadline.
func readResponse(t *testing.T, c net.Conn) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// A body that trickles in is cut at the body timeout with 408 in the
// route's shape, and the connection is closed, so that slow clients cannot
// hold dso's descriptors.
func TestSlowBodyTimesOut(t *testing.T) {
	be := newBackend(t, "openai")
	fe := newFrontend(t, []config.Backend{openaiCfg(be)}, func(o *proxy.Options, _ []config.Backend) {
		o.BodyTimeout = 200 * time.Millisecond
	})
	addr := strings.TrimPrefix(fe.URL, "http://")
	for _, path := range []string{"/v1/chat/completions", "/api/chat"} {
		head := "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
		resp, body := rawRequest(t, addr, head, 10*time.Second)
		if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
			t.Errorf("%s: %d, close %v; want 408 and the connection closed", path, resp.StatusCode, resp.Close)
		}
		var shape map[string]any
		if json.Unmarshal(body, &shape) != nil || shape["error"] == nil {
			t.Errorf("%s: body %s is not the route's error shape", path, body)
		}
	}
	if n := len(be.requests()); n != 0 {
		t.Errorf("the backend got %d requests", n)
	}
}

// A request without a valid key is refused before its body is read: a
// client that never sends the body still gets its 401 at once.
func TestAuthFailsWithoutTheBody(t *testing.T) {
	be := newBackend(t, "openai")
	fe := newFrontend(t, []config.Backend{openaiCfg(be)}, func(o *proxy.Options, _ []config.Backend) {
		o.APIKeys = []config.Secret{"sk-right"}
		o.BodyTimeout = time.Minute // not what answers
	})
	head := "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer sk-wrong\r\nContent-Length: 100000\r\n\r\n{"
	resp, body := rawRequest(t, strings.TrimPrefix(fe.URL, "http://"), head, 10*time.Second)
	if resp.StatusCode != http.StatusUnauthorized || !resp.Close || !strings.Contains(string(body), "invalid_api_key") {
		t.Errorf("%d, close %v, %s; want 401 at once and the connection closed", resp.StatusCode, resp.Close, body)
	}
}

// An embedder that panics fails retrieval open: the chat is answered,
// uninjected, with a degraded reason, and dso goes on serving.
func TestPanickingEmbedderFailsOpen(t *testing.T) {
	be := newBackend(t, "openai")
	hash := providers.NewHashEmbedder(256, 1)
	lib := newSpaceLibrary(t, t.TempDir(), library.Space{Name: "panicky", Embedder: library.EmbedFunc(func(ctx context.Context, texts []string) ([][]float32, error) {
		for _, s := range texts {
			if strings.Contains(s, "boom") {
				panic(errors.New("boom"))
			}
		}
		return hash.Embed(ctx, texts)
	})})
	fe := newFrontend(t, []config.Backend{openaiCfg(be)}, withRetrieval(lib, time.Second))
	addExperience(t, fe, "Cache answers for a minute.", "")
	for i, q := range []string{"boom: how long to cache answers?", "How long should I cache answers?"} {
		body := chatBody(q)
		code, hdr, resp := post(t, fe.URL+"/v1/chat/completions", body)
		if code != 200 {
			t.Fatalf("%q: %d %s", q, code, resp)
		}
		if i == 0 && (hdr.Get(proxy.HeaderDegraded) != "embed_error" || string(be.last(t).Body) != body) {
			t.Errorf("%q: degraded %q, backend got %s", q, hdr.Get(proxy.HeaderDegraded), be.last(t).Body)
		}
		if i == 1 && hdr.Get(proxy.HeaderDegraded) != "" {
			t.Errorf("%q after a panic: degraded %q", q, hdr.Get(proxy.HeaderDegraded))
		}
	}
}

// Requests and request bytes in flight are bounded: past either bound a
// chat gets 503 with Retry-After in its route's shape at once, and is
// served again once room is made.
func TestInFlightBounds(t *testing.T) {
	be, arrived, release := newHoldingBackend(t, 8)
	fe := newFrontend(t, []config.Backend{openaiCfg(be)}, func(o *proxy.Options, _ []config.Backend) {
		o.MaxInFlight, o.MaxBytesInFlight = 2, 1000
		o.MaxInFlightPerClient = -1 // every request here comes from one address
	})
	held := func(pad int) chan int {
		done := make(chan int, 1)
		body := `{"model":"m","messages":[{"role":"user","content":"hold` + strings.Repeat(" ", pad) + `"}]}`
		go func() {
			resp, err := http.Post(fe.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
			if err != nil {
				done <- 0
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("held request: %d %s", resp.StatusCode, b)
			}
			done <- resp.StatusCode
		}()
		select {
		case <-arrived:
		case code := <-done:
			t.Fatalf("the held request ended (%d) before reaching the backend", code)
		}
		return done
	}
	small := chatBody("hi")
	first := held(500) // about 560 bytes in flight
	// Another 560 bytes would pass the byte bound; a small one does not.
	big := `{"model":"m","messages":[{"role":"user","content":"x` + strings.Repeat(" ", 500) + `"}]}`
	code, hdr, body := post(t, fe.URL+"/v1/chat/completions", big)
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") != "1" || !strings.Contains(string(body), "overloaded") {
		t.Errorf("past the byte bound: %d, Retry-After %q, %s", code, hdr.Get("Retry-After"), body)
	}
	second := held(0)
	// Two requests in flight: the request bound refuses a third, on the
	// Ollama surface in its shape too.
	code, _, body = post(t, fe.URL+"/api/chat", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	if code != http.StatusServiceUnavailable || !strings.HasPrefix(string(body), `{"error":"`) {
		t.Errorf("past the request bound: %d %s", code, body)
	}
	close(release)
	if a, b := <-first, <-second; a != 200 || b != 200 {
		t.Errorf("held requests: %d, %d", a, b)
	}
	if code, _, body := post(t, fe.URL+"/v1/chat/completions", small); code != 200 {
		t.Errorf("after the held ones ended: %d %s", code, body)
	}
	_, _, mb := send(t, http.MethodGet, fe.URL+"/metrics", "")
	for _, want := range []string{`dso_proxy_refused_total{bound="bytes"} 1`, `dso_proxy_refused_total{bound="requests"} 1`} {
		if !strings.Contains(string(mb), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// /v1/models asks every backend at once and leaves out one that does not
// answer within the models timeout, instead of waiting on it.
func TestModelsDoNotWaitForAHangingBackend(t *testing.T) {
	good, hung := newBackend(t, "openai"), newBackend(t, "ollama")
	hung.setOverride(func(w http.ResponseWriter, r *http.Request, body []byte) bool {
		<-r.Context().Done() // never answers
		return true
	})
	gcfg, hcfg := openaiCfg(good), ollamaCfg(hung)
	gcfg.Name, hcfg.Name = "good", "hung"
	hcfg.Models = []string{"llama*"}
	fe := newFrontend(t, []config.Backend{hcfg, gcfg}, func(o *proxy.Options, _ []config.Backend) {
		o.ModelsTimeout = 300 * time.Millisecond
	})
	code, _, body := send(t, http.MethodGet, fe.URL+"/v1/models", "")
	var list struct {
		Data []struct{ ID string } `json:"data"`
	}
	if err := json.Unmarshal(body, &list); err != nil || code != 200 || len(list.Data) == 0 {
		t.Fatalf("/v1/models with one backend hanging: %d %s", code, body)
	}
}

// A request with both Content-Length and Transfer-Encoding (the shape of a
// smuggling attempt) is answered and its connection closed; a plain
// request on a kept-alive connection is not.
func TestLengthAndTransferEncodingClosesTheConnection(t *testing.T) {
	be := newBackend(t, "openai")
	fe := newFrontend(t, []config.Backend{openaiCfg(be)})
	addr := strings.TrimPrefix(fe.URL, "http://")
	body := `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
	for _, tc := range []struct {
		name, head string
		closed     bool
	}{
		{"length and chunked", "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n" +
			fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body), true},
		{"length only", fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n%s", len(body), body), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, tc.head); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			// A closed connection reads EOF at once; an open one would
			// wait for a next response until the deadline.
			c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			_, err = br.ReadByte()
			closed := errors.Is(err, io.EOF)
			if closed != tc.closed || resp.Close != tc.closed {
				t.Errorf("connection closed %v (read: %v, response says close %v); want %v", closed, err, resp.Close, tc.closed)
			}
		})
	}
}

// Headers past proxy.MaxHeaderBytes get 431 in the route's error shape,
// not Go's plain-text answer.
func TestOversizedHeadersGetTheRouteShape(t *testing.T) {
	be := newBackend(t, "openai")
	fe := newFrontend(t, []config.Backend{openaiCfg(be)})
	big := strings.Repeat("a", proxy.MaxHeaderBytes)
	for _, tc := range []struct{ path, want string }{
		{"/v1/chat/completions", `"message"`},
		{"/api/chat", `"error":"`},
	} {
		req, _ := http.NewRequest(http.MethodPost, fe.URL+tc.path, strings.NewReader(`{}`))
		req.Header.Set("X-Big", big)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || !json.Valid(b) || !strings.Contains(string(b), tc.want) {
			t.Errorf("%s: %d %s; want 431 in the route's shape", tc.path, resp.StatusCode, b)
		}
	}
	if n := len(be.requests()); n != 0 {
		t.Errorf("the backend got %d requests", n)
	}
}
