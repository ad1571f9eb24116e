package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/dso-proxy/dso/providers"
)

// StatusClientClosed is logged (never sent) when the client went away.
const StatusClientClosed = 499

// HTTPError is an error with what the client may see: a status, an error
// type and a message. Err is for logs only.
type HTTPError struct {
	Status int
	Type   string // OpenAI error type, e.g. invalid_request_error
	Code   string // OpenAI error code, e.g. model_not_found; may be empty
	Msg    string // safe to show the client
	Err    error  // cause, for logs
	// RetryAfter, when positive, is sent as Retry-After (seconds).
	RetryAfter int
}

func (e *HTTPError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%d %s: %v", e.Status, e.Msg, e.Err)
	}
	return fmt.Sprintf("%d %s", e.Status, e.Msg)
}

func (e *HTTPError) Unwrap() error { return e.Err }

func badRequest(format string, args ...any) *HTTPError {
	return &HTTPError{Status: http.StatusBadRequest, Type: "invalid_request_error", Msg: fmt.Sprintf(format, args...)}
}

// surface is the API shape a route speaks.
type surface int

const (
	surfaceOpenAI surface = iota
	surfaceOllama
	surfaceAnthropic // Anthropic's Messages API
)

// toHTTPError maps any error to what the client sees. Backend status
// errors keep their status and message.
func toHTTPError(err error) *HTTPError {
	var he *HTTPError
	if errors.As(err, &he) {
		return he
	}
	var se *providers.StatusError
	if errors.As(err, &se) {
		return &HTTPError{Status: se.StatusCode, Type: upstreamType(se.StatusCode), Msg: se.Message(), Err: err}
	}
	switch {
	case errors.Is(err, providers.ErrBadRequest):
		return &HTTPError{Status: http.StatusBadRequest, Type: "invalid_request_error", Msg: err.Error(), Err: err}
	case errors.Is(err, providers.ErrNoBackend):
		return &HTTPError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "model_not_found", Msg: err.Error(), Err: err}
	case errors.Is(err, providers.ErrTimeout):
		return &HTTPError{Status: http.StatusGatewayTimeout, Type: "upstream_error", Code: "backend_timeout", Msg: "the backend did not answer in time", Err: err}
	case errors.Is(err, providers.ErrRedirect):
		return &HTTPError{Status: http.StatusBadGateway, Type: "upstream_error", Code: "backend_redirect", Msg: "the backend answered with a redirect, which dso does not follow: configure the URL it redirects to", Err: err}
	case errors.Is(err, providers.ErrUnreachable):
		return &HTTPError{Status: http.StatusBadGateway, Type: "upstream_error", Code: "backend_unreachable", Msg: "the backend could not be reached", Err: err}
	case errors.Is(err, context.Canceled):
		return &HTTPError{Status: StatusClientClosed, Type: "client_closed", Msg: "client closed the request", Err: err}
	case errors.Is(err, providers.ErrUnsupported):
		return &HTTPError{Status: http.StatusNotImplemented, Type: "invalid_request_error", Msg: err.Error(), Err: err}
	}
	return &HTTPError{Status: http.StatusBadGateway, Type: "upstream_error", Msg: "the backend failed", Err: err}
}

func upstreamType(status int) string {
	if status >= 500 {
		return "upstream_error"
	}
	return "invalid_request_error"
}

// closeAfter are the refusals after which dso closes the connection, so
// that a refused client (an attacker among them) does not keep a
// descriptor: authentication and host refusals, a body too slow or too
// large, and overload.
var closeAfter = map[int]bool{
	http.StatusUnauthorized: true, http.StatusForbidden: true, http.StatusRequestTimeout: true,
	http.StatusRequestEntityTooLarge: true, http.StatusTooManyRequests: true, http.StatusServiceUnavailable: true,
}

// writeError writes err in the surface's shape. It must be called before
// any byte of the response body is written.
func writeError(w http.ResponseWriter, s surface, err error) {
	he := toHTTPError(err)
	if he.Status == StatusClientClosed {
		return // nobody is listening
	}
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	if he.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(he.RetryAfter))
	}
	if closeAfter[he.Status] {
		// A refused client's connection is not kept for its next try:
		// nor is a body it may still be sending read.
		h.Set("Connection", "close")
	}
	w.WriteHeader(he.Status)
	_, _ = w.Write(errorBody(s, he))
}

// errorBody is the error's JSON in the surface's shape.
func errorBody(s surface, he *HTTPError) []byte {
	var v any
	switch s {
	case surfaceOllama:
		v = map[string]string{"error": he.Msg}
	case surfaceAnthropic:
		type detail struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		}
		v = struct {
			Type  string `json:"type"`
			Error detail `json:"error"`
		}{"error", detail{anthropicErrorType(he.Status), he.Msg}}
	default:
		var code any
		if he.Code != "" {
			code = he.Code
		}
		typ := he.Type
		if typ == "" {
			typ = "api_error"
		}
		v = map[string]any{"error": map[string]any{"message": he.Msg, "type": typ, "param": nil, "code": code}}
	}
	b, _ := json.Marshal(v)
	return b
}

// anthropicErrorType is Anthropic's error type for a status, as its
// clients branch on it (the SDKs retry rate_limit_error, overloaded_error
// and api_error).
func anthropicErrorType(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid_request_error"
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case 529:
		return "overloaded_error"
	}
	if status >= 500 {
		return "api_error"
	}
	return "invalid_request_error"
}
