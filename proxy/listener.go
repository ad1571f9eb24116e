package proxy

import (
	"context"
	"net"
	"net/netip"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Listener wraps ln with dso's bounds on client connections: at most max
// open at once (more wait in the kernel's backlog, as with
// netutil.LimitListener: dso's descriptors stay its own), and at most
// perClient from one address, whose connections past it are closed as soon
// as they are accepted, so that one address (a client holding sockets open
// with a trickle of bytes) cannot take every connection and leave none for
// health checks and other clients. max or perClient <= 0: no such bound.
// A trusted proxy's connections (Options.TrustedProxies) carry many
// clients and are not bounded per client.
func (s *Server) Listener(ln net.Listener, max, perClient int) net.Listener {
	l := &limitListener{Listener: ln, perClient: perClient, done: make(chan struct{}), exempt: s.trustedProxy,
		clients: map[netip.Addr]int{}, open: s.metrics.connsOpen,
		refused: func(addr netip.Addr) {
			s.metrics.connsRefused.Inc()
			s.connRefusals.add(context.Background(), 1, errClientConns{addr})
		}}
	if max > 0 {
		l.sem = make(chan struct{}, max)
	}
	return l
}

type errClientConns struct{ addr netip.Addr }

func (e errClientConns) Error() string {
	return "connections past max_connections_per_client from " + e.addr.String()
}

type limitListener struct {
	net.Listener
	sem       chan struct{} // a token per open connection; nil: no bound
	perClient int
	exempt    func(netip.Addr) bool // addresses not bounded per client: trusted proxies
	open      prometheus.Gauge
	refused   func(netip.Addr)

	mu      sync.Mutex // protects clients
	clients map[netip.Addr]int

	closeOnce sync.Once
	done      chan struct{} // closed by Close: Accept stops waiting for a token
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		if l.sem != nil {
			select {
			case l.sem <- struct{}{}:
			case <-l.done:
				return nil, net.ErrClosed
			}
		}
		c, err := l.Listener.Accept()
		if err != nil {
			l.release()
			return nil, err
		}
		addr := remoteAddr(c)
		counted := l.perClient > 0 && addr.IsValid() && !l.exempt(addr)
		if counted && !l.take(addr) {
			_ = c.Close()
			l.release()
			l.refused(addr)
			continue
		}
		l.open.Inc()
		return &limitConn{Conn: c, l: l, addr: addr, counted: counted}, nil
	}
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

func (l *limitListener) release() {
	if l.sem != nil {
		<-l.sem
	}
}

// take counts a connection from addr, or reports that addr has its share;
// drop gives one back.
// The map has a key per address with connections open, so at most max.
func (l *limitListener) take(addr netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.clients[addr] >= l.perClient {
		return false
	}
	l.clients[addr]++
	return true
}

func (l *limitListener) drop(addr netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.clients[addr]--; l.clients[addr] <= 0 {
		delete(l.clients, addr)
	}
}

func remoteAddr(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	return netip.Addr{} // a unix socket: no per-client bound
}

// limitConn gives its tokens back once, when closed.
type limitConn struct {
	net.Conn
	l       *limitListener
	addr    netip.Addr
	counted bool // against its address's share (see Accept)
	once    sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		if c.counted {
			c.l.drop(c.addr)
		}
		c.l.open.Dec()
		c.l.release()
	})
	return err
}
