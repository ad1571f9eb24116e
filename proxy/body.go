package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// DefaultBodyRateWindow is the interval over which Options.MinBodyRate is
// measured: a body must bring MinBodyRate×window bytes in each window (or
// end) to go on.
const DefaultBodyRateWindow = 5 * time.Second

// readBody reads the whole request body within the size limit. Reading it
// first is deliberate: see DESIGN.md on streams lost when the request body
// is streamed upstream while the response streams back.
//
// Two clocks bound the read: BodyTimeout for the whole body, and the
// minimum rate, so that a client sending a byte every few seconds (which
// no total deadline catches early) loses its connection within a window.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	rc := http.NewResponseController(w)
	start := time.Now()
	end := start.Add(s.opts.BodyTimeout)
	// Deadlines for the body only: cleared once it is read, so that a
	// long stream back is not cut. Servers that cannot set one (tests'
	// recorders) go without.
	deadline := rc.SetReadDeadline(end) == nil
	var src io.Reader = r.Body
	var rate *rateReader
	if deadline && s.opts.MinBodyRate > 0 {
		rate = &rateReader{r: r.Body, rc: rc, end: end, window: s.opts.BodyRateWindow,
			min: max(1, int64(s.opts.MinBodyRate)*int64(s.opts.BodyRateWindow)/int64(time.Second))}
		rate.next(start)
		src = rate
	}
	lr := http.MaxBytesReader(w, io.NopCloser(src), s.opts.MaxBodyBytes)
	var body []byte
	var err error
	if n := r.ContentLength; n > 0 && n <= s.opts.MaxBodyBytes {
		// The size is known: one allocation, not ReadAll's doublings.
		body = make([]byte, n)
		_, err = io.ReadFull(lr, body)
	} else {
		body, err = io.ReadAll(lr)
	}
	if deadline {
		_ = rc.SetReadDeadline(time.Time{})
	}
	if err != nil {
		var mbe *http.MaxBytesError
		var ne net.Error
		switch {
		case errors.As(err, &mbe):
			return nil, &HTTPError{Status: http.StatusRequestEntityTooLarge, Type: "invalid_request_error", Code: "request_too_large", Msg: fmt.Sprintf("request body is larger than %d bytes", mbe.Limit), Err: err}
		case errors.As(err, &ne) && ne.Timeout() && rate != nil && time.Now().Before(end):
			s.metrics.refused.WithLabelValues("body_rate").Inc()
			return nil, &HTTPError{Status: http.StatusRequestTimeout, Type: "invalid_request_error", Code: "body_too_slow",
				Msg: fmt.Sprintf("the request body arrived slower than %d bytes a second", s.opts.MinBodyRate), Err: err}
		case errors.As(err, &ne) && ne.Timeout():
			return nil, &HTTPError{Status: http.StatusRequestTimeout, Type: "invalid_request_error", Code: "body_timeout", Msg: fmt.Sprintf("the request body was not received within %v", s.opts.BodyTimeout), Err: err}
		}
		return nil, &HTTPError{Status: http.StatusBadRequest, Type: "invalid_request_error", Msg: "could not read the request body", Err: err}
	}
	return body, nil
}

// rateReader moves the connection's read deadline one window on each time
// the body has brought min bytes since the last move: a body slower than
// min a window meets the deadline and its read fails with a timeout.
type rateReader struct {
	r      io.Reader
	rc     *http.ResponseController
	end    time.Time // the whole body's deadline, never moved
	window time.Duration
	min    int64 // bytes a window must bring
	got    int64 // bytes since the deadline last moved
}

func (rr *rateReader) Read(p []byte) (int, error) {
	n, err := rr.r.Read(p)
	rr.got += int64(n)
	if rr.got >= rr.min {
		rr.next(time.Now())
	}
	return n, err
}

// next starts a window at now.
func (rr *rateReader) next(now time.Time) {
	rr.got = 0
	d := now.Add(rr.window)
	if d.After(rr.end) {
		d = rr.end
	}
	_ = rr.rc.SetReadDeadline(d)
}
