package config

import (
	"net"
	"net/netip"
	"strings"
)

// IsLoopback reports whether a listen address (host:port, as net.Listen
// takes it) serves only this machine: a loopback IP (127.0.0.0/8, ::1,
// also IPv4-mapped) or the name localhost. An empty host (":8080"), an
// unspecified IP (0.0.0.0, ::), any other IP and any other name are not:
// what a name resolves to is not known here, so the careful answer is no.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr // a bare host, such as ::1
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
