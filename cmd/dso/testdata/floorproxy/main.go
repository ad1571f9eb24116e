// Command floorproxy is the floor dso's memory is compared with: Go's
// httputil.ReverseProxy in front of one backend, nothing added. It prints
// the address it listens on.
package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
)

func main() {
	u, err := url.Parse(os.Args[1])
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Println(ln.Addr())
	panic(http.Serve(ln, httputil.NewSingleHostReverseProxy(u)))
}
