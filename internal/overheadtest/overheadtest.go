// Package overheadtest holds what the overhead benchmarks share, so that
// the in-process comparison (package proxy) and the served one (dso serve
// beside testdata/floorproxy) measure against the same backend and the
// same floor: the requests sent, a fake OpenAI backend answering with
// recorded payloads, the floor's handler, and the median their rounds are
// reported by.
package overheadtest

import (
	"bytes"
	"io"
	"net/http"
	"slices"
)

// The requests both benchmarks send: one chat, and the same streamed.
const (
	Chat   = `{"model":"gpt-4o","messages":[{"role":"user","content":"Capital of France?"}]}`
	Stream = `{"model":"gpt-4o","messages":[{"role":"user","content":"Capital of France?"}],"stream":true,"stream_options":{"include_usage":true}}`
)

// Backend answers POST /v1/chat/completions with chat, or with stream's
// events one flush each when the request asks for a stream.
func Backend(chat, stream []byte) http.Handler {
	var events [][]byte
	for _, ev := range bytes.SplitAfter(stream, []byte("\n\n")) {
		if len(ev) > 0 {
			events = append(events, ev)
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
			http.NotFound(w, r)
			return
		}
		if !bytes.Contains(body, []byte(`"stream":true`)) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(chat)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for _, ev := range events {
			_, _ = w.Write(ev)
			w.(http.Flusher).Flush()
		}
	})
}

// BodyFirst is the floor's handler: it reads the request body before next
// (an httputil.ReverseProxy) forwards it, as dso does. Streamed, the
// body's last read can land after the response began and cut the answer
// short (golang/go#40747: about 1% of streamed answers), and a floor must
// deliver every byte.
func BodyFirst(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}

// Median is the median of xs (the upper one of an even count), 0 for none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
