package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/dso-proxy/dso/providers"
	"io"
	"mime"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
)

// hopHeaders are connection-level headers never forwarded either way
// (RFC 9110 §7.6.1).
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// hopHeader is hopHeaders as a set.
var hopHeader = func() map[string]bool {
	m := make(map[string]bool, len(hopHeaders))
	for _, h := range hopHeaders {
		m[h] = true
	}
	return m
}()

// notUpstream are request headers dso does not forward: the transport sets
// Host, length and encoding for the body dso sends.
var notUpstream = map[string]bool{
	"Host": true, "Content-Length": true, "Content-Type": true, "Accept-Encoding": true,
}

// dsoOwned reports whether a header is one only dso may set: X-DSO-* and
// X-Request-Id, in any case. They are never copied across dso, in either
// direction. A backend's (or anything behind it) must not pass for dso's
// trace id, injected experiences, degraded reason, feedback outcome or
// request id, which clients act on; a client's must not steer a backend
// that happens to be another dso. dso sets its own values itself.
func dsoOwned(k string) bool {
	const prefix = "X-Dso-"
	return strings.EqualFold(k, "X-Request-Id") || len(k) >= len(prefix) && strings.EqualFold(k[:len(prefix)], prefix)
}

// copyHeaders copies src to dst without hop-by-hop headers, including any
// named in src's Connection header, without the headers dso owns, and
// without Server: what software and version runs behind dso is not the
// client's to learn.
func copyHeaders(dst, src http.Header, skip map[string]bool) {
	// The fields a Connection header names are hop-by-hop too; most
	// messages have none, so the set is only made for those that do.
	var named map[string]bool
	for _, v := range src["Connection"] {
		for _, f := range strings.Split(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				if named == nil {
					named = map[string]bool{}
				}
				named[http.CanonicalHeaderKey(f)] = true
			}
		}
	}
	for k, vs := range src {
		if hopHeader[k] || named[k] || skip[k] || dsoOwned(k) || k == "Server" {
			continue
		}
		// Shared, capped: an Add on either side copies instead of
		// writing into the other's values.
		dst[k] = vs[:len(vs):len(vs)]
	}
}

// upstreamHeader is what dso forwards of the client's headers. The client's
// credentials go upstream only where neither the backend has its own key
// nor dso checked a key of its own, and never one of dso's admin keys.
func (s *Server) upstreamHeader(r *http.Request, hasKey bool) http.Header {
	h := make(http.Header, len(r.Header)+1)
	copyHeaders(h, r.Header, notUpstream)
	if hasKey || len(s.keys.digests) > 0 || (len(s.admin.digests) > 0 && s.admin.check(presentedKey(r))) {
		h.Del("Authorization")
		h.Del("X-Api-Key")
	}
	h.Set("X-Request-Id", RequestID(r.Context()))
	return h
}

// framing says how a streamed body splits into events.
type framing int

const (
	framingNone   framing = iota // not a stream: copy as is
	framingSSE                   // text/event-stream: events end with a blank line
	framingNDJSON                // application/x-ndjson: events end with \n
)

// framingOf decides from the response's media type, as
// httputil.ReverseProxy does; a body of unknown length with no known type
// is treated as newline-delimited so it is still flushed as it arrives.
func framingOf(resp *http.Response) framing {
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch mt {
	case "text/event-stream":
		return framingSSE
	case "application/x-ndjson", "application/jsonl", "application/json-seq":
		return framingNDJSON
	}
	if resp.ContentLength == -1 && mt != "application/json" {
		return framingNDJSON
	}
	return framingNone
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// relay writes the backend's response to the client unchanged: status,
// end-to-end headers and body bytes. Streams are written whole event by
// whole event, each flushed as it arrives, so that a failure mid-stream can
// end with one well-formed error event in the client's format.
//
// tee, when not nil, receives a copy of what the client received.
func (s *Server) relay(w http.ResponseWriter, resp *http.Response, sf surface, tee io.Writer) {
	defer resp.Body.Close()
	var dst io.Writer = w
	if tee != nil {
		dst = io.MultiWriter(w, tee)
	}
	fr := framingOf(resp)
	var whole []byte
	if fr == framingNone && resp.ContentLength >= 0 && resp.ContentLength <= maxWholeBody {
		// A whole answer of known, bounded size is read before anything is
		// sent: a backend that breaks off then gets the client a 502 in
		// its route's shape, not a response that is cut short.
		whole = make([]byte, resp.ContentLength)
		if _, err := io.ReadFull(resp.Body, whole); err != nil {
			s.fail(w, resp.Request, sf, &HTTPError{
				Status: http.StatusBadGateway, Type: "upstream_error", Code: "backend_unreachable",
				Msg: "the backend broke off its response", Err: fmt.Errorf("%w: %v", providers.ErrUnreachable, err)})
			return
		}
	}
	copyHeaders(w.Header(), resp.Header, nil)
	if fr != framingNone {
		w.Header().Del("Content-Length")
	}
	w.WriteHeader(resp.StatusCode)
	if whole != nil {
		_, _ = dst.Write(whole)
		return
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	rc := http.NewResponseController(w)
	if fr == framingNone {
		if _, err := io.CopyBuffer(dst, resp.Body, buf); err != nil {
			info(resp.Request.Context()).err = err
			panic(http.ErrAbortHandler) // truncate: never fake a complete body
		}
		return
	}
	var pending []byte
	partial := false // bytes of an unfinished event went out
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			// Only the new bytes (and the two before them, for a boundary
			// split across reads) can hold a new boundary.
			from := max(0, len(pending)-2)
			pending = append(pending, buf[:n]...)
			cut := 0
			if c := lastBoundary(pending[from:], fr); c > 0 {
				cut = from + c
			}
			if cut == 0 && len(pending) >= maxPendingEvent {
				// No boundary in sight: relay what came, in bounded
				// pieces, rather than hold a stream whole.
				cut, partial = len(pending), true
			} else if cut > 0 {
				partial = false
			}
			if cut > 0 {
				if _, werr := dst.Write(pending[:cut]); werr != nil {
					return // client gone; its context cancels the backend
				}
				_ = rc.Flush()
				pending = append(pending[:0], pending[cut:]...)
			}
		}
		if err == io.EOF {
			if len(pending) > 0 {
				_, _ = dst.Write(pending)
				_ = rc.Flush()
			}
			return
		}
		if err != nil {
			info(resp.Request.Context()).err = err
			if partial {
				panic(http.ErrAbortHandler) // an error event cannot follow half an event
			}
			s.streamError(w, sf, fr, err)
			return
		}
	}
}

// Relay bounds.
const (
	// maxWholeBody: whole (non-stream) answers up to this size are read
	// before they are relayed; larger ones stream through.
	maxWholeBody = 8 << 20
	// maxPendingEvent bounds the bytes held while waiting for the end of
	// a stream event; real events are far smaller.
	maxPendingEvent = 1 << 20
)

// lastBoundary returns the end of the last complete event in b, or 0: for
// SSE, just after the last "\n\n" or "\n\r\n". It walks back line ends
// from the end, so a chunk that ends an event (the usual case) costs a few
// bytes, not two searches of all of it.
func lastBoundary(b []byte, fr framing) int {
	if fr == framingNDJSON {
		return bytes.LastIndexByte(b, '\n') + 1
	}
	for e := len(b); ; {
		e = bytes.LastIndexByte(b[:e], '\n')
		switch {
		case e < 1:
			return 0
		case b[e-1] == '\n', b[e-1] == '\r' && e >= 2 && b[e-2] == '\n':
			return e + 1
		}
	}
}

// streamError ends a stream whose header has gone out with one error event
// in the client's format.
func (s *Server) streamError(w http.ResponseWriter, sf surface, fr framing, err error) {
	he := toHTTPError(err)
	if he.Status == StatusClientClosed {
		return
	}
	body := errorBody(sf, he)
	switch {
	case fr == framingSSE && sf == surfaceAnthropic:
		// Anthropic names every event; its clients read an error event.
		body = append(append([]byte("event: error\ndata: "), body...), "\n\n"...)
	case fr == framingSSE:
		body = append(append([]byte("data: "), body...), "\n\n"...)
	default:
		body = append(body, '\n')
	}
	_, _ = w.Write(body)
	_ = http.NewResponseController(w).Flush()
}

// eventWriter frames translated events for the client and flushes each.
type eventWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	fr  framing
	tee io.Writer // may be nil
}

func newEventWriter(w http.ResponseWriter, fr framing, tee io.Writer) *eventWriter {
	h := w.Header()
	if fr == framingSSE {
		h.Set("Content-Type", "text/event-stream")
	} else {
		h.Set("Content-Type", "application/x-ndjson")
	}
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	return &eventWriter{w: w, rc: http.NewResponseController(w), fr: fr, tee: tee}
}

func (e *eventWriter) emit(payload []byte) error {
	var buf []byte
	if e.fr == framingSSE {
		buf = make([]byte, 0, len(payload)+8)
		buf = append(append(append(buf, "data: "...), payload...), "\n\n"...)
	} else {
		buf = append(append(make([]byte, 0, len(payload)+1), payload...), '\n')
	}
	if _, err := e.w.Write(buf); err != nil {
		return errClientGone
	}
	if e.tee != nil {
		_, _ = e.tee.Write(buf)
	}
	return e.rc.Flush()
}

// emitNamed writes one SSE event with an event name, as the Responses
// and Anthropic streams name every event.
func (e *eventWriter) emitNamed(event string, payload []byte) error {
	buf := make([]byte, 0, len(event)+len(payload)+16)
	buf = append(append(append(buf, "event: "...), event...), '\n')
	buf = append(append(append(buf, "data: "...), payload...), "\n\n"...)
	if _, err := e.w.Write(buf); err != nil {
		return errClientGone
	}
	if e.tee != nil {
		_, _ = e.tee.Write(buf)
	}
	return e.rc.Flush()
}

var errClientGone = errors.New("client went away")

// writeJSON writes v with status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, surfaceOpenAI, err)
		return
	}
	writeRawJSON(w, code, b)
}

func writeRawJSON(w http.ResponseWriter, code int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
