// Command floorproxy is the floor dso is compared with: Go's
// httputil.ReverseProxy in front of one backend, nothing added. With
// -pool N it keeps up to N idle connections to the backend (the stock
// transport keeps 2, so under concurrent load it dials for most
// requests); dso keeps 64. It reads each request body before forwarding
// it, as dso does (overheadtest.BodyFirst says why). It prints the
// address it listens on.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"

	"github.com/dso-proxy/dso/internal/overheadtest"
)

func main() {
	pool := flag.Int("pool", 0, "idle connections kept to the backend (0: the stock transport's)")
	flag.Parse()
	u, err := url.Parse(flag.Arg(0))
	if err != nil {
		panic(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	if *pool > 0 {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = *pool
		rp.Transport = t
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Println(ln.Addr())
	panic(http.Serve(ln, overheadtest.BodyFirst(rp)))
}
