package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dso-proxy/dso/config"
)

func TestHealth(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			w.Write([]byte("ok\n"))
		case "/readyz":
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"ready":false,"backends":{"ollama":"unreachable"}}` + "\n"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer backend.Close()
	huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write(bytes.Repeat([]byte("x"), 1<<20))
	}))
	defer huge.Close()
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // until dso health gives up and hangs up
	}))
	defer hang.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nothing := ln.Addr().String()
	ln.Close()
	hostPort := strings.TrimPrefix(backend.URL, "http://")

	for _, tt := range []struct {
		name   string
		args   []string
		code   int
		stdout string // in stdout
		stderr string // in stderr
	}{
		{"healthy", []string{"--addr", backend.URL}, 0, backend.URL + "/healthz: 200 OK", ""},
		{"host:port", []string{"--addr", hostPort}, 0, "/healthz: 200 OK", ""},
		{"not ready", []string{"--addr", hostPort, "--ready"}, 1, "", `/readyz: 503 Service Unavailable: {"ready":false,"backends":{"ollama":"unreachable"}}`},
		{"nothing listening", []string{"--addr", nothing}, 1, "", "nothing is listening there"},
		{"no answer in time", []string{"--addr", hang.URL, "--timeout", "50ms"}, 1, "", "no answer in time"},
		{"bounded body", []string{"--addr", huge.URL}, 1, "", "503 Service Unavailable: xxx"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, append([]string{"health"}, tt.args...)...)
			if code != tt.code {
				t.Errorf("exit %d; want %d (stdout %q, stderr %q)", code, tt.code, stdout, stderr)
			}
			if !strings.Contains(stdout, tt.stdout) || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("stdout %q, stderr %q; want them to contain %q and %q", stdout, stderr, tt.stdout, tt.stderr)
			}
			if len(stderr) > 1024 {
				t.Errorf("stderr is %d bytes; want the body cut short", len(stderr))
			}
		})
	}
}

// dso health asks the address serve listens on, on loopback where serve
// takes every address.
func TestHealthBase(t *testing.T) {
	file := writeFile(t, "dso.yaml", "listen: 10.0.0.7:7000\n")
	for _, tt := range []struct {
		name, addr, file, listenEnv string
		want                        string // "" for an error
	}{
		{name: "default", want: "http://127.0.0.1:8080"},
		{name: "DSO_LISTEN of the image", listenEnv: "0.0.0.0:8080", want: "http://127.0.0.1:8080"},
		{name: "no host", listenEnv: ":9000", want: "http://127.0.0.1:9000"},
		{name: "IPv6 any", listenEnv: "[::]:9000", want: "http://[::1]:9000"},
		{name: "config file", file: file, want: "http://10.0.0.7:7000"},
		{name: "DSO_LISTEN over the file", file: file, listenEnv: "127.0.0.2:1", want: "http://127.0.0.2:1"},
		{name: "--addr over both", addr: "h:2", file: file, listenEnv: ":1", want: "http://h:2"},
		{name: "URL", addr: "https://dso.example/base/", want: "https://dso.example/base"},
		{name: "port 0", listenEnv: "127.0.0.1:0"},
		{name: "no port", addr: "localhost"},
		{name: "other scheme", addr: "ftp://h"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string {
				if k == config.EnvListen {
					return tt.listenEnv
				}
				return ""
			}
			got, err := healthBase(tt.addr, tt.file, getenv)
			if tt.want == "" {
				if err == nil {
					t.Errorf("got %q; want an error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
