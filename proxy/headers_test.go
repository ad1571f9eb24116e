package proxy

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/dso-proxy/dso/config"
)

// Reading a chat's retrieval settings from its headers allocates nothing:
// the X-DSO keys are looked up as net/http stores them, not canonicalised
// again on every request.
func TestRequestSettingsDoNotAllocate(t *testing.T) {
	s := &Server{}
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
