package proxy

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/go-chi/chi/v5"
)

// Log attribute keys.
const (
	logKeyRequestID = "request_id"
	logKeyRoute     = "route"
	logKeyModel     = "model"
	logKeyBackend   = "backend"
	logKeyStatus    = "status"
	logKeyDuration  = "duration_us"
	logKeyTTFB      = "ttfb_us"
	logKeyBytes     = "bytes"
	logKeyErr       = "err"
)

type ctxKeyInfo struct{}

// reqInfo is filled in by handlers and read by the logging and metrics
// middleware once the handler returns.
type reqInfo struct {
	id      string
	model   string
	backend string
	err     error // logged, never sent
	timing  timing
	route   string      // the metrics' route label outside the route table (Observe)
	status  int         // the response's status, once written
	broken  atomic.Bool // the backend broke off its answer's body
}

func info(ctx context.Context) *reqInfo {
	if ri, ok := ctx.Value(ctxKeyInfo{}).(*reqInfo); ok {
		return ri
	}
	return &reqInfo{}
}

// RequestID returns the request's id, or "" outside a request.
func RequestID(ctx context.Context) string { return info(ctx).id }

// requestID honours a sane incoming X-Request-Id and otherwise makes one.
func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 128 && printableASCII(id) {
		return id
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// observe is the outermost middleware: request id, recovery, logging and
// metrics.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ri := &reqInfo{id: requestID(r)}
		ctx := context.WithValue(r.Context(), ctxKeyInfo{}, ri)
		w.Header().Set("X-Request-Id", ri.id)
		// JSON and event streams must not be sniffed into HTML by a
		// browser; a relayed backend's own value replaces it.
		w.Header().Set("X-Content-Type-Options", "nosniff")
		sw := &statusWriter{ResponseWriter: w, start: start, ri: ri}
		if len(r.TransferEncoding) > 0 {
			// Go's server drops a Content-Length sent beside a transfer
			// coding before any handler sees it, so dso cannot tell such a
			// request (a smuggling attempt, RFC 9112 §6.3) from a plain
			// chunked one: it closes the connection after the response to
			// both, as the RFC asks for the first. API clients send JSON
			// with a length; the rare chunked one pays a reconnect.
			w.Header().Set("Connection", "close")
		}
		defer func() {
			rec := recover()
			if rec != nil && rec != http.ErrAbortHandler {
				s.log.ErrorContext(ctx, "panic serving request", logKeyRequestID, ri.id, "panic", rec)
				if !sw.wroteHeader {
					writeError(sw, routeSurface(r), &HTTPError{Status: http.StatusInternalServerError, Type: "api_error", Msg: "internal error"})
				}
			}
			s.finish(ctx, r, sw, ri, start)
			if rec == http.ErrAbortHandler {
				panic(rec)
			}
		}()
		if n := headerSize(r); n > MaxHeaderBytes {
			// Go's server answers oversized headers itself, in plain text;
			// it is given more room than this, so that dso answers in the
			// route's shape for all but the largest.
			w.Header().Set("Connection", "close")
			writeError(sw, routeSurface(r), &HTTPError{Status: http.StatusRequestHeaderFieldsTooLarge, Type: "invalid_request_error",
				Msg: fmt.Sprintf("request headers are %d bytes; at most %d are accepted", n, MaxHeaderBytes)})
			return
		}
		next.ServeHTTP(sw, r.WithContext(ctx))
	})
}

// Observe serves h, a handler outside dso's route table (the network's
// logs), with what every route of dso's gets: a request id, recovery, a
// line in the request log and the request metrics, labelled route (a
// pattern: its values are a closed set).
func (s *Server) Observe(route string, h http.Handler) http.Handler {
	return s.observe(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info(r.Context()).route = route
		h.ServeHTTP(w, r)
	}))
}

// MaxHeaderBytes bounds a request's line and headers; beyond it dso answers
// 431 in the route's error shape. The http.Server serving dso should allow
// more (dso serve allows 1 MiB), or Go answers first, in plain text.
const MaxHeaderBytes = 64 << 10

// headerSize is the size of r's request line and headers as sent, near
// enough: each header line is "Key: value\r\n".
func headerSize(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

func (s *Server) finish(ctx context.Context, r *http.Request, sw *statusWriter, ri *reqInfo, start time.Time) {
	route := chi.RouteContext(ctx).RoutePattern()
	if route == "" {
		route = ri.route
	}
	if route == "" {
		route = "unmatched"
	}
	status := ri.status
	if status == 0 {
		status = http.StatusOK
		if ctx.Err() != nil {
			status = StatusClientClosed
		}
	}
	dur := time.Since(start)
	backend := ri.backend
	s.metrics.observe(route, backend, status, dur, sw.firstByte)
	var overhead time.Duration
	if ri.timing.on && sw.firstByte > 0 {
		overhead = ri.timing.dso
		s.metrics.cached.overhead.get(route).Observe(overhead.Seconds())
	}
	if backend != "" {
		s.stats.request(status, dur, overhead)
	}
	level := slog.LevelInfo
	if ri.err != nil && status >= 500 {
		level = slog.LevelWarn
	}
	h := s.log.Handler()
	if !h.Enabled(ctx, level) {
		return
	}
	// Gathered first and added at once: past the five a record holds
	// inline, each AddAttrs call grows its slice again.
	var buf [10]slog.Attr
	attrs := append(buf[:0],
		slog.String(logKeyRequestID, ri.id),
		slog.String("method", r.Method),
		slog.String(logKeyRoute, route),
		slog.Int(logKeyStatus, status),
		slog.Int64(logKeyDuration, dur.Microseconds()),
		slog.Int64(logKeyBytes, sw.bytes),
	)
	if sw.firstByte > 0 {
		attrs = append(attrs, slog.Int64(logKeyTTFB, sw.firstByte.Microseconds()))
	}
	if ri.model != "" {
		attrs = append(attrs, slog.String(logKeyModel, ri.model))
	}
	if backend != "" {
		attrs = append(attrs, slog.String(logKeyBackend, backend))
	}
	if ri.err != nil {
		attrs = append(attrs, slog.String(logKeyErr, ri.err.Error()))
	}
	// Straight to the handler with no caller's PC (slog's documented way
	// to wrap a logger): LogAttrs would walk the stack for a source that
	// a request line never shows, on every request.
	rec := slog.NewRecord(time.Now(), level, "request", 0)
	rec.AddAttrs(attrs...)
	_ = h.Handle(ctx, rec)
}

// statusWriter records status, size and time to first byte. It keeps
// http.Flusher reachable through Unwrap, for http.ResponseController.
type statusWriter struct {
	http.ResponseWriter
	start       time.Time
	ri          *reqInfo // its status is the response's
	wroteHeader bool
	bytes       int64
	firstByte   time.Duration
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.ri.status, w.wroteHeader = code, true
		if code >= 300 {
			// No answer, nothing to grade: the trace is not kept (see
			// recordTrace), so its id is not handed out.
			w.Header().Del(keyTraceID)
		}
		if code >= 200 {
			w.firstByte = time.Since(w.start)
			if w.ri.timing.on {
				// Added, not set: a backend's own Server-Timing metrics,
				// relayed, stay beside dso's.
				w.Header().Add("Server-Timing", w.ri.timing.header(w.firstByte))
			}
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var _ http.Flusher = (*statusWriter)(nil)

// routeSurface tells which error shape a path speaks.
func routeSurface(r *http.Request) surface {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		return surfaceOllama
	}
	if p := r.URL.Path; p == "/v1/messages" || strings.HasPrefix(p, "/v1/messages/") {
		return surfaceAnthropic
	}
	return surfaceOpenAI
}

// keyring checks client API keys in constant time.
type keyring struct {
	digests [][32]byte
}

func newKeyring(keys []config.Secret) *keyring {
	k := &keyring{}
	for _, key := range keys {
		k.digests = append(k.digests, sha256.Sum256([]byte(key.Reveal())))
	}
	return k
}

// check compares the presented key's digest with every configured digest,
// without stopping early, so timing says nothing about which one matched.
func (k *keyring) check(presented string) bool {
	d := sha256.Sum256([]byte(presented))
	ok := 0
	for i := range k.digests {
		ok |= subtle.ConstantTimeCompare(d[:], k.digests[i][:])
	}
	return ok == 1
}

// presentedKey reads "Authorization: Bearer KEY" or "X-API-Key: KEY".
func presentedKey(r *http.Request) string {
	if v := r.Header.Get("Authorization"); v != "" {
		if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
			return strings.TrimSpace(v[7:])
		}
		return ""
	}
	return r.Header.Get("X-API-Key")
}

// auth requires a configured client key (or an admin key) when there are
// client keys.
func (s *Server) auth(next http.Handler) http.Handler { return s.requireKey(s.clients)(next) }

// requireKey requires one of k's keys when k has any.
func (s *Server) requireKey(k *keyring) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if len(k.digests) == 0 {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !k.check(presentedKey(r)) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="dso"`)
				// Refused without reading the body; closing the
				// connection keeps the server from waiting to drain it.
				w.Header().Set("Connection", "close")
				writeError(w, routeSurface(r), &HTTPError{Status: http.StatusUnauthorized, Type: "invalid_request_error", Code: "invalid_api_key", Msg: "missing or invalid API key"})
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// guardLibrary refuses every request when no key guards the library and
// it was not opened (Options.OpenLibrary).
func (s *Server) guardLibrary(next http.Handler) http.Handler {
	if !s.closed {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, routeSurface(r), errLibraryClosed())
	})
}

// errLibraryClosed is what a request to a closed library gets: the fix,
// in the names the operator sets.
func errLibraryClosed() *HTTPError {
	return &HTTPError{
		Status: http.StatusForbidden, Type: "permission_error", Code: "library_closed",
		Msg: fmt.Sprintf("this dso has no keys, so it keeps its experience library and feedback closed: "+
			"set %s (admin_keys in the config file) and send Authorization: Bearer KEY, "+
			"or set %s=1 (open_library: true) to open them to anyone who can reach it",
			config.EnvAdminKeys, config.EnvOpenLibrary),
	}
}

// retryAfter parses a Retry-After header in seconds, capped.
func retryAfter(h http.Header, max time.Duration) time.Duration {
	if h == nil {
		return 0
	}
	n, err := strconv.Atoi(h.Get("Retry-After"))
	if err != nil || n <= 0 {
		return 0
	}
	d := time.Duration(n) * time.Second
	if d > max {
		d = max
	}
	return d
}
