package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/proxy"
	"github.com/dso-proxy/dso/store"
)

// Starting before the store answers. With the library in Redis, a serve
// started before Redis (compose, a rolling restart) does not exit: it
// listens at once, answers /healthz 200 and /readyz 503 with the reason,
// and proxies every other request as a proxy without a library would
// (chat uninjected, saying X-DSO-Degraded: store_unavailable, as when the
// store goes away later); it tries the store again with a bounded
// backoff, and starts as usual, on the same listener, once it answers.

// Bounds of the retries of a store that does not answer at start: the
// first pause, doubled after each try up to the last.
const (
	storeRetryFirst = 100 * time.Millisecond
	storeRetryMax   = 2 * time.Second
)

// openRetrievalWaiting is openRetrieval, except that a store that does not
// answer (store.ErrUnavailable) is waited for while ln is served by a
// waitingHandler. It returns the listener serve goes on with: ln itself
// when the store answered at once. When ctx ends first it returns ctx's
// error, with ln closed.
func openRetrievalWaiting(ctx context.Context, ln net.Listener, cfg config.Config, router *providers.Router, log *slog.Logger) (proxy.Retrieval, func(), net.Listener, error) {
	rt, closeLib, err := openRetrieval(ctx, cfg, router, log)
	if !errors.Is(err, store.ErrUnavailable) {
		return rt, closeLib, ln, err
	}
	log.Warn("the store does not answer; listening with /readyz 503 until it does",
		"addr", ln.Addr().String(), "store", storeKind(cfg), "err", err.Error())
	start := time.Now()
	pump := newAcceptPump(ln)
	opts, oerr := proxyOptions(cfg, router, log, ln.Addr().String())
	if oerr != nil {
		return proxy.Retrieval{}, nil, nil, oerr
	}
	bare := proxy.New(opts) // no library: nothing to inject, no traces
	defer bare.Close()
	wh := &waitingHandler{proxy: bare}
	wh.set(err)
	hs := &http.Server{Handler: wh, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 1 << 20}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(pump.listener(false)) }()
	// stop ends the waiting server (it closes the waiting listener, not
	// ln); fail also closes ln.
	stop := func() error {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		err := hs.Shutdown(sctx)
		if err != nil {
			hs.Close()
		}
		if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		return err
	}
	fail := func(err error) (proxy.Retrieval, func(), net.Listener, error) {
		err = errors.Join(err, stop())
		_ = pump.close()
		return proxy.Retrieval{}, nil, nil, err
	}
	for delay := storeRetryFirst; ; delay = min(2*delay, storeRetryMax) {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fail(ctx.Err())
		case serr := <-served:
			t.Stop()
			served <- serr // for stop
			return fail(serr)
		case <-t.C:
		}
		rt, closeLib, err = openRetrieval(ctx, cfg, router, log)
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrUnavailable) {
			return fail(err)
		}
		wh.set(err)
		log.Debug("the store does not answer yet", "err", err.Error())
	}
	if err := stop(); err != nil {
		closeLib()
		_ = pump.close()
		return proxy.Retrieval{}, nil, nil, err
	}
	log.Info("the store answers; starting", "store", storeKind(cfg), "waited", time.Since(start).Round(time.Millisecond).String())
	return rt, closeLib, pump.listener(true), nil
}

// waitingHandler is what serve answers while the store does not: the
// process is alive (/healthz), not ready (/readyz 503, saying why), and
// the rest goes to proxy, which has no library.
type waitingHandler struct {
	proxy http.Handler

	mu     sync.Mutex // protects reason
	reason string
}

func (h *waitingHandler) set(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reason = err.Error()
}

func (h *waitingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	reason := h.reason
	h.mu.Unlock()
	if r.URL.Path == "/healthz" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
		return
	}
	var body any
	switch p := r.URL.Path; {
	case p == "/readyz":
		body = map[string]any{"ready": false, "state": "starting",
			"store": map[string]any{"state": "store_unavailable", "reason": reason}}
	case needsStore(p):
		w.Header().Set("Retry-After", "2")
		body = map[string]any{"error": map[string]any{"type": "api_error", "code": "store_unavailable",
			"message": "dso is starting: the experience store does not answer yet; retry later"}}
	default:
		// Whatever it answers, retrieval was skipped for this reason.
		w.Header().Set(proxy.HeaderDegraded, "store_unavailable")
		h.proxy.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusServiceUnavailable)
	_ = json.NewEncoder(w).Encode(body)
}

// needsStore reports whether the route at path reads or writes the store:
// the experience API, feedback, the dashboard's reads and the network's
// logs.
func needsStore(path string) bool {
	for _, p := range []string{"/v1/experiences", "/v1/feedback", "/v1/traces", "/v1/stats", "/v1/network", "/log/"} {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// acceptPump accepts on one listener for the listeners it hands out, one
// after another (the waiting server's, then serve's), so that ln changes
// hands without being closed.
type acceptPump struct {
	ln       net.Listener
	accepted chan accepted
	done     chan struct{} // closed when ln's Accept fails for good
	err      error         // why; set before done is closed
	quit     chan struct{} // closed by close
	once     sync.Once
}

type accepted struct {
	c   net.Conn
	err error // a temporary error, for the server's own backoff
}

func newAcceptPump(ln net.Listener) *acceptPump {
	p := &acceptPump{ln: ln, accepted: make(chan accepted), done: make(chan struct{}), quit: make(chan struct{})}
	go p.run()
	return p
}

func (p *acceptPump) run() {
	for {
		c, err := p.ln.Accept()
		if err != nil && !isTemporary(err) {
			p.err = err
			close(p.done)
			return
		}
		select {
		case p.accepted <- accepted{c, err}:
		case <-p.quit:
			if c != nil {
				c.Close()
			}
		}
	}
}

// close closes ln, which ends run.
func (p *acceptPump) close() error {
	var err error
	p.once.Do(func() {
		close(p.quit)
		err = p.ln.Close()
	})
	return err
}

// isTemporary is net/http's test for an Accept error worth retrying.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// listener is a listener on the pump; closing it closes ln too when owns.
func (p *acceptPump) listener(owns bool) net.Listener {
	return &pumpListener{p: p, owns: owns, closed: make(chan struct{})}
}

type pumpListener struct {
	p      *acceptPump
	owns   bool
	once   sync.Once
	closed chan struct{}
}

func (l *pumpListener) Accept() (net.Conn, error) {
	select {
	case a := <-l.p.accepted:
		return a.c, a.err
	case <-l.closed:
		return nil, net.ErrClosed
	case <-l.p.done:
		return nil, l.p.err
	}
}

func (l *pumpListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.closed)
		if l.owns {
			err = l.p.close()
		}
	})
	return err
}

func (l *pumpListener) Addr() net.Addr { return l.p.ln.Addr() }
