package proxy

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// DNS rebinding: a page on evil.example whose name the attacker makes
// resolve to 127.0.0.1 reaches dso from the user's own browser, with the
// page's Host, so that the cross-origin check (which compares Origin with
// Host) sees a same-origin request. Only a name can be rebound: a Host
// that is an IP address, or a loopback name, reaches dso by what it is.
// So dso answers only Hosts that are addresses, loopback names, or names
// the operator configured, as Jupyter, Vite and Ollama (OLLAMA_ORIGINS) do.

// hostAllowlist is the set of Host names dso answers besides IP addresses
// and loopback names.
type hostAllowlist struct {
	any      bool            // "*": every name
	names    map[string]bool // exact names, lower case
	suffixes []string        // ".example.com": every name under it
}

func newHostAllowlist(names []string) hostAllowlist {
	l := hostAllowlist{names: map[string]bool{}}
	for _, n := range names {
		n = normHost(n)
		switch {
		case n == "*":
			l.any = true
		case strings.HasPrefix(n, "."):
			l.suffixes = append(l.suffixes, n)
		case n != "":
			l.names[n] = true
		}
	}
	return l
}

// normHost is host without a port or a trailing dot, in lower case.
func normHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	return strings.ToLower(host)
}

// allows reports whether a request's Host may be answered.
func (l hostAllowlist) allows(host string) bool {
	if l.any || host == "" {
		return true // HTTP/1.0 sends none: nothing for a page to rebind
	}
	h := normHost(host)
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if h == "localhost" || strings.HasSuffix(h, ".localhost") || l.names[h] {
		return true // RFC 6761: .localhost names are loopback
	}
	for _, s := range l.suffixes {
		if strings.HasSuffix(h, s) {
			return true
		}
	}
	return false
}

// checkHost refuses requests whose Host is not allowed, with 403 in the
// route's shape, but for the health checks.
func (s *Server) checkHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.hosts.allows(r.Host) && r.URL.Path != "/healthz" && r.URL.Path != "/readyz" {
			// Health is asked by name by load balancers (Caddy asks
			// dso-a:8080) and tells a page nothing of anyone's data.
			s.metrics.refused.WithLabelValues("host").Inc()
			s.hostRefusals.add(r.Context(), 1, fmt.Errorf("host %q", clipHeader(r.Host)))
			writeError(w, routeSurface(r), &HTTPError{Status: http.StatusForbidden, Type: "permission_error", Code: "host_not_allowed",
				Msg: "dso does not answer for this host name; the operator can add it to allowed_hosts"})
			return
		}
		next.ServeHTTP(w, r)
	})
}
