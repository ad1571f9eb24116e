package proxy_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/proxy"
)

type fakeNetwork struct{}

func (fakeNetwork) Status(ctx context.Context) (any, error) {
	return map[string]any{"networks": []map[string]string{{"id": "hanzo"}}}, nil
}

// GET /v1/network is guarded like the experience API: with admin keys
// set, a client key is not enough.
func TestNetworkRouteIsGuarded(t *testing.T) {
	be := newBackend(t, "openai")
	fe := newFrontend(t, []config.Backend{openaiCfg(be)}, func(o *proxy.Options, _ []config.Backend) {
		o.AdminKeys = []config.Secret{uiAdminKey}
		o.APIKeys = []config.Secret{"client-key"}
		o.Network = fakeNetwork{}
	})
	for _, tt := range []struct {
		auth []string
		want int
	}{
		{nil, http.StatusUnauthorized},
		{[]string{"Authorization", "Bearer client-key"}, http.StatusUnauthorized},
		{adminAuth, http.StatusOK},
	} {
		code, _, body := send(t, http.MethodGet, fe.URL+"/v1/network", "", tt.auth...)
		if code != tt.want {
			t.Errorf("auth %v: %d %s; want %d", tt.auth, code, body, tt.want)
		}
		if code == http.StatusOK && !strings.Contains(string(body), `"hanzo"`) {
			t.Errorf("body %s; want the network's status", body)
		}
	}
}

// Without a network, the route says so.
func TestNetworkRouteWithoutNetwork(t *testing.T) {
	be := newBackend(t, "openai")
	fe := newFrontend(t, []config.Backend{openaiCfg(be)}, func(o *proxy.Options, _ []config.Backend) {
		o.AdminKeys = []config.Secret{uiAdminKey}
	})
	if code, _, body := send(t, http.MethodGet, fe.URL+"/v1/network", "", adminAuth...); code != http.StatusNotFound {
		t.Errorf("%d %s; want 404", code, body)
	}
}
