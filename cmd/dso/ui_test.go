package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/dso-proxy/dso/config"
)

// dso serve serves the dashboard and the endpoints behind it.
func TestServeDashboard(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	cfg := config.Default()
	cfg.Listen = addr
	cfg.Data = t.TempDir()
	cfg.SetBackends([]config.Backend{{Type: config.TypeOllama, URL: "http://127.0.0.1:1"}})
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serveOn(ctx, ln, cfg, slog.New(slog.DiscardHandler)) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct{ path, want string }{
		{"/ui/", "dso · Overview"},
		{"/ui/library", "/ui/static/library.js"},
		{"/v1/stats", `"interval_seconds":10`},
		{"/v1/traces", `"object":"list"`},
	} {
		if code, body := get(tc.path); code != http.StatusOK || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s: %d %.200s; want 200 with %q", tc.path, code, body, tc.want)
		}
	}
}
