package proxy

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/dso-proxy/dso/config"
)

// Reading a chat's retrieval settings from its headers allocates nothing:
// the X-DSO keys are looked up as net/http stores them, not canonicalised
// again on every request.
func TestRequestSettingsDoNotAllocate(t *testing.T) {
	s := &Server{keys: &keyring{}, admin: &keyring{}}
	r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	r.Header.Set(HeaderTopK, "3")
	allocs := testing.AllocsPerRun(100, func() {
		st, err := s.requestSettings(r, config.Backend{}, "m")
		if err != nil || st.topK != 3 {
			t.Fatalf("settings %+v, %v; want top-k 3", st, err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per request; want 0", allocs)
	}
}

// copyHeaders drops hop-by-hop headers, those the Connection header
// names, the skipped and dso's own, keeps the rest, and an Add on the
// copy does not reach the source.
func TestCopyHeaders(t *testing.T) {
	src := http.Header{
		"Connection":          {"X-Hop-One, x-hop-two"},
		"X-Hop-One":           {"1"},
		"X-Hop-Two":           {"2"},
		"Keep-Alive":          {"timeout=5"},
		"Proxy-Authorization": {"Basic eA=="},
		"Transfer-Encoding":   {"chunked"},
		"Host":                {"backend"},
		"X-Dso-Trace-Id":      {"tr_forged"},
		"X-Kept":              {"a", "b"},
		"Content-Type":        {"application/json"},
	}
	dst := http.Header{}
	copyHeaders(dst, src, map[string]bool{"Host": true})
	want := http.Header{"X-Kept": {"a", "b"}, "Content-Type": {"application/json"}}
	if len(dst) != len(want) {
		t.Fatalf("copied %v; want %v", dst, want)
	}
	for k, vs := range want {
		if !slices.Equal(dst[k], vs) {
			t.Errorf("%s: %q; want %q", k, dst[k], vs)
		}
	}
	dst.Add("X-Kept", "c")
	if !slices.Equal(src["X-Kept"], []string{"a", "b"}) {
		t.Errorf("an Add on the copy changed the source: %q", src["X-Kept"])
	}
	// Without a Connection header nothing else is dropped.
	dst = http.Header{}
	copyHeaders(dst, http.Header{"X-Hop-One": {"1"}}, nil)
	if dst.Get("X-Hop-One") != "1" {
		t.Errorf("copied %v; want X-Hop-One kept", dst)
	}
}
