package providers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/dso-proxy/dso/config"
)

// Sentinel errors callers branch on. Errors from a backend call wrap one of
// these or are a *StatusError.
var (
	// ErrUnreachable: the request did not get a response (dial failure,
	// connection reset before headers). Safe to retry before the first byte.
	ErrUnreachable = errors.New("backend unreachable")
	// ErrTimeout: the backend sent no headers, or no body bytes, within
	// its timeout.
	ErrTimeout = errors.New("backend timed out")
	// ErrUnsupported: the backend type cannot serve this call.
	ErrUnsupported = errors.New("not supported by this backend")
	// ErrNoBackend: no configured backend serves the model.
	ErrNoBackend = errors.New("no backend serves this model")
	// ErrRedirect: the backend answered with a redirect. dso does not
	// follow it, as a reverse proxy does not: the backend's URL should be
	// the one it redirects to.
	ErrRedirect = errors.New("backend redirected")
)

// maxErrorBody caps how much of a backend's error response is read.
const maxErrorBody = 1 << 20

// StatusError is a backend's HTTP error response: status and body as sent.
type StatusError struct {
	Backend    string
	StatusCode int
	Body       []byte // at most 1 MiB of the backend's body
	Header     http.Header
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("backend %s: status %d: %s", e.Backend, e.StatusCode, e.Message())
}

// Message extracts the human-readable message from an OpenAI-shaped
// ({"error":{"message":...}}), Anthropic-shaped ({"type":"error",
// "error":{"type":...,"message":...}}), Ollama-shaped ({"error":"..."}) or
// plain body.
func (e *StatusError) Message() string {
	return ErrorMessage(e.Body, http.StatusText(e.StatusCode))
}

// ErrorMessage extracts an error message from a body in either API's error
// shape, or returns the trimmed body, or fallback when it is empty.
func ErrorMessage(body []byte, fallback string) string {
	var v struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
	}
	if json.Unmarshal(body, &v) == nil {
		var s string
		if json.Unmarshal(v.Error, &s) == nil && s != "" {
			return s
		}
		var o struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(v.Error, &o) == nil && o.Message != "" {
			return o.Message
		}
		if v.Message != "" {
			return v.Message
		}
	}
	if s := strings.TrimSpace(string(body)); s != "" {
		if len(s) > 512 {
			s = s[:512]
		}
		return s
	}
	return fallback
}

// conn is what every backend type shares: a base URL, an optional key, an
// HTTP client and the timeout rules. What dso relays (send) goes through
// the client's Transport alone, so the client's own policies (Timeout,
// CheckRedirect, Jar) apply only to the calls made through the API
// clients built on it.
type conn struct {
	cfg  config.Backend
	base *url.URL
	http *http.Client
	urls *sync.Map // path → base joined with it (see url)
	// header, when set, writes the backend's own request headers, its
	// key among them, in place of "Authorization: Bearer KEY": a backend
	// type whose API takes its key another way (Anthropic's x-api-key).
	header func(h http.Header)
}

func newConn(cfg config.Backend, hc *http.Client) (conn, error) {
	u, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if err != nil {
		return conn{}, fmt.Errorf("backend %s: url: %w", cfg.Name, err)
	}
	if hc == nil {
		hc = DefaultHTTPClient()
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = config.DefaultBackendTimeout
	}
	return conn{cfg: cfg, base: u, http: hc, urls: new(sync.Map)}, nil
}

// DefaultHTTPClient is the client backends use when none is given: no
// overall timeout (streams may be long; conn applies its own), pooled
// keep-alive connections.
func DefaultHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	return &http.Client{Transport: t}
}

// Name is the backend's configured name.
func (c *conn) Name() string { return c.cfg.Name }

// Config returns the backend's configuration.
func (c *conn) Config() config.Backend { return c.cfg }

// send POSTs body (or GETs when body is nil) to the backend path. hdr holds
// end-to-end headers to forward; Authorization is replaced by the backend's
// key when it has one. A status of 400 or more comes back as *StatusError,
// a redirect as ErrRedirect.
// The response body enforces the idle timeout and must be closed.
func (c *conn) send(ctx context.Context, method, path string, body []byte, hdr http.Header) (*http.Response, error) {
	return c.sendTo(ctx, method, c.url(path), body, hdr)
}

// sendUncached is send for a path made per request (one naming a
// response id) and a query: its URL is joined each time, not cached.
func (c *conn) sendUncached(ctx context.Context, method, path, rawQuery string, body []byte, hdr http.Header) (*http.Response, error) {
	u := c.base.JoinPath(path)
	u.RawQuery = rawQuery
	return c.sendTo(ctx, method, u.String(), body, hdr)
}

func (c *conn) sendTo(ctx context.Context, method, target string, body []byte, hdr http.Header) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	return c.exchange(ctx, method, target, rd, int64(len(body)), jsonType, hdr)
}

const jsonType = "application/json"

// exchange is send to a full URL. A body that is not a *bytes.Reader is
// streamed, size bytes (-1: unknown), and every read of it resets the idle
// timer: an upload that moves is not idle.
func (c *conn) exchange(ctx context.Context, method, u string, body io.Reader, size int64, contentType string, hdr http.Header) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	timer := time.AfterFunc(c.cfg.Timeout, func() { cancel(ErrTimeout) })
	_, whole := body.(*bytes.Reader)
	if body != nil && !whole {
		body = &idleReader{r: body, timer: timer, d: c.cfg.Timeout}
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		timer.Stop()
		cancel(nil)
		return nil, fmt.Errorf("backend %s: %w", c.cfg.Name, err)
	}
	if body != nil && !whole {
		if size == 0 {
			req.Body = http.NoBody
		}
		req.ContentLength = size
	}
	req.Header = make(http.Header, len(hdr)+2)
	for k, vs := range hdr {
		// Shared, capped: a Set here replaces the slice, an Add copies.
		req.Header[k] = vs[:len(vs):len(vs)]
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	switch {
	case c.header != nil:
		c.header(req.Header)
	case c.cfg.APIKey != "":
		req.Header.Set("Authorization", "Bearer "+c.cfg.APIKey.Reveal())
	}
	// The transport, not the client, as httputil.ReverseProxy does: a
	// proxy relays one exchange and follows no redirects (and the client
	// would clone the headers on every request to follow them).
	rt := c.http.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		timer.Stop()
		cause := context.Cause(ctx)
		cancel(nil)
		return nil, c.classify(cause, err)
	}
	resp.Body = &idleBody{rc: resp.Body, ctx: ctx, timer: timer, d: c.cfg.Timeout, cancel: cancel}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		resp.Body.Close()
		return nil, fmt.Errorf("backend %s: %w (status %d): set its url to where it redirects", c.cfg.Name, ErrRedirect, resp.StatusCode)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return nil, &StatusError{Backend: c.cfg.Name, StatusCode: resp.StatusCode, Body: b, Header: resp.Header.Clone()}
	}
	return resp, nil
}

// url is the backend's base URL joined with path. The paths are the
// providers' own constants, a handful, so the cache stays that small.
func (c *conn) url(path string) string {
	if u, ok := c.urls.Load(path); ok {
		return u.(string)
	}
	u := c.base.JoinPath(path).String()
	c.urls.Store(path, u)
	return u
}

// classify maps a transport error to the sentinels, without the URL (which
// may carry credentials) in the message.
func (c *conn) classify(cause, err error) error {
	switch {
	case errors.Is(cause, ErrTimeout):
		return fmt.Errorf("backend %s: %w after %s", c.cfg.Name, ErrTimeout, c.cfg.Timeout)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("backend %s: %w", c.cfg.Name, err)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("backend %s: %w: %v", c.cfg.Name, ErrUnreachable, err)
}

// idleBody cancels the request when no read completes within d.
type idleBody struct {
	rc     io.ReadCloser
	ctx    context.Context
	timer  *time.Timer
	d      time.Duration
	cancel context.CancelCauseFunc
}

func (b *idleBody) Read(p []byte) (int, error) {
	b.timer.Reset(b.d)
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		if cause := context.Cause(b.ctx); errors.Is(cause, ErrTimeout) {
			return n, fmt.Errorf("reading body: %w", ErrTimeout)
		}
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.timer.Stop()
	err := b.rc.Close()
	b.cancel(nil)
	return err
}

// idleReader resets the idle timer on every read of a streamed request
// body.
type idleReader struct {
	r     io.Reader
	timer *time.Timer
	d     time.Duration
}

func (r *idleReader) Read(p []byte) (int, error) {
	r.timer.Reset(r.d)
	return r.r.Read(p)
}

// keyTransport adds the backend's key to requests made through library
// clients (dso's own embedding and listing calls). A backend with no key
// configured gets the credentials of the client whose request caused the
// call (WithClientAuth), as a passthrough proxy would forward them.
type keyTransport struct {
	key  config.Secret
	base http.RoundTripper
}

func (t keyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	auth := ""
	if t.key != "" {
		auth = "Bearer " + t.key.Reveal()
	} else if a, ok := r.Context().Value(clientAuthKey{}).(string); ok {
		auth = a
	}
	if auth == "" {
		if strings.TrimSpace(r.Header.Get("Authorization")) == "Bearer" {
			r = r.Clone(r.Context())
			r.Header.Del("Authorization") // go-openai's empty key
		}
		return t.base.RoundTrip(r)
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", auth)
	return t.base.RoundTrip(r)
}

type clientAuthKey struct{}

// WithClientAuth returns ctx carrying a client's Authorization header
// value, used by embedding calls to backends that have no key of their
// own. An empty value returns ctx unchanged.
func WithClientAuth(ctx context.Context, authorization string) context.Context {
	if authorization == "" {
		return ctx
	}
	return context.WithValue(ctx, clientAuthKey{}, authorization)
}

// withKey returns hc with every request carrying key.
func withKey(hc *http.Client, key config.Secret) *http.Client {
	rt := hc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	c := *hc
	c.Transport = keyTransport{key: key, base: rt}
	return &c
}
