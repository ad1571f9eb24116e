package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// listenProblem says what is wrong with a listen address, or "" when
// net.Listen("tcp", addr) could take it: host:port, the host empty, an IP
// (IPv6 in brackets) or a name, the port a number from 0 to 65535.
func listenProblem(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Sprintf("%q is not host:port (such as 127.0.0.1:8080, :8080 or [::1]:8080)", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 64); err != nil || n > 65535 {
		return fmt.Sprintf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	return ""
}

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
