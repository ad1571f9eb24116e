package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/gpuidx"
)

// wait bounds every wait in these tests; a hang fails instead of stalling.
const wait = 10 * time.Second

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Settings come from the file, then the environment, then flags.
func TestServeConfigPrecedence(t *testing.T) {
	file := writeFile(t, "dso.yaml", `listen: file:1
data: /file
log_level: warn
api_keys: [filekey]
backends:
  - name: fromfile
    type: ollama
    url: http://file:11434
`)
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		listen  string
		data    string
		level   string
		backend string
		keys    string
	}{
		{
			name: "defaults", listen: config.DefaultListen, data: config.DefaultData, level: "info",
			backend: "http://127.0.0.1:11434",
		},
		{
			name: "file via --config", args: []string{"--config", file},
			listen: "file:1", data: "/file", level: "warn", backend: "http://file:11434", keys: "filekey",
		},
		{
			name: "file via DSO_CONFIG", env: map[string]string{config.EnvConfig: file},
			listen: "file:1", data: "/file", level: "warn", backend: "http://file:11434", keys: "filekey",
		},
		{
			name: "env over file",
			env: map[string]string{
				config.EnvConfig: file, config.EnvListen: "env:2", config.EnvData: "/env",
				config.EnvBackends: "openai:http://env/v1", config.EnvAPIKeys: "envkey",
			},
			listen: "env:2", data: "/env", level: "warn", backend: "http://env/v1", keys: "envkey",
		},
		{
			name: "flags over env over file",
			args: []string{"--listen", "flag:3", "--data=/flag", "--log-level", "debug", "--backend", "ollama:http://flag1:1", "--backend", "openai:https://flag2/v1"},
			env: map[string]string{
				config.EnvConfig: file, config.EnvListen: "env:2", config.EnvData: "/env",
				config.EnvBackends: "openai:http://env/v1", config.EnvAPIKeys: "envkey",
			},
			listen: "flag:3", data: "/flag", level: "debug", backend: "http://flag1:1,https://flag2/v1", keys: "envkey",
		},
		{
			name:   "flag --config over DSO_CONFIG",
			args:   []string{"--config", file},
			env:    map[string]string{config.EnvConfig: filepath.Join(t.TempDir(), "absent.yaml")},
			listen: "file:1", data: "/file", level: "warn", backend: "http://file:11434", keys: "filekey",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			cfg, err := loadServeConfig(tt.args, io.Discard, &stderr, func(k string) string { return tt.env[k] })
			if err != nil {
				t.Fatalf("loadServeConfig: %v (stderr %q)", err, stderr.String())
			}
			var urls, keys []string
			for _, b := range cfg.Backends {
				urls = append(urls, b.URL)
			}
			for _, k := range cfg.APIKeys {
				keys = append(keys, k.Reveal())
			}
			got := []string{cfg.Listen, cfg.Data, cfg.LogLevel, strings.Join(urls, ","), strings.Join(keys, ",")}
			want := []string{tt.listen, tt.data, tt.level, tt.backend, tt.keys}
			for i, name := range []string{"listen", "data", "log level", "backends", "api keys"} {
				if got[i] != want[i] {
					t.Errorf("%s = %q; want %q", name, got[i], want[i])
				}
			}
		})
	}
}

func TestServeConfigErrors(t *testing.T) {
	bad := writeFile(t, "bad.yaml", "listen: :1\nbogus: 2\n")
	for _, tt := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{name: "bad flag backend", args: []string{"--backend", "vllm:http://h"}, want: "vllm"},
		{name: "bad env backend", env: map[string]string{config.EnvBackends: "ollama"}, want: config.EnvBackends},
		{name: "bad file", args: []string{"--config", bad}, want: "bogus"},
		{name: "missing file", args: []string{"--config", filepath.Join(t.TempDir(), "absent.yaml")}, want: "absent.yaml"},
		{name: "invalid level", args: []string{"--log-level", "loud"}, want: "loud"},
		{name: "unknown flag", args: []string{"--nope"}, want: "usage"},
		{name: "stray argument", args: []string{"extra"}, want: "usage"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadServeConfig(tt.args, io.Discard, io.Discard, func(k string) string { return tt.env[k] })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v; want one containing %q", err, tt.want)
			}
		})
	}
}

// serveFlags are every flag `dso serve` takes, with a valid value.
var serveFlags = map[string]string{
	"config":    "",
	"listen":    "127.0.0.1:0",
	"backend":   "ollama:http://127.0.0.1:1",
	"data":      "/tmp/x",
	"log-level": "debug",
}

func TestServeHelp(t *testing.T) {
	for _, arg := range []string{"--help", "-h"} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{"serve", arg}, &stdout, &stderr); code != 0 {
			t.Errorf("dso serve %s exited %d; want 0 (stderr %q)", arg, code, stderr.String())
		}
		usage := stdout.String() + stderr.String()
		if !strings.Contains(usage, "usage: dso serve") {
			t.Errorf("dso serve %s printed %q; want the usage", arg, usage)
		}
		for name := range serveFlags {
			if !strings.Contains(usage, "--"+name+" ") {
				t.Errorf("usage does not mention --%s", name)
			}
		}
		for _, env := range []string{config.EnvConfig, config.EnvListen, config.EnvBackends, config.EnvData, config.EnvAPIKeys, config.EnvAdminKeys, config.EnvOpenLibrary, "open_library"} {
			if !strings.Contains(usage, env) {
				t.Errorf("usage does not mention %s", env)
			}
		}
	}
	// Every flag the usage mentions is one the parser accepts.
	file := writeFile(t, "ok.yaml", "listen: 127.0.0.1:0\n")
	for name, v := range serveFlags {
		if name == "config" {
			v = file
		}
		if _, err := loadServeConfig([]string{"--" + name, v}, io.Discard, io.Discard, func(string) string { return "" }); err != nil {
			t.Errorf("--%s %s: %v", name, v, err)
		}
	}
}

func TestConfigCheckCommand(t *testing.T) {
	good := writeFile(t, "good.yaml", "listen: 127.0.0.1:8080\nbackends:\n  - type: ollama\n    url: http://127.0.0.1:11434\n")
	bad := writeFile(t, "bad.yaml", "listen: :8080\nbackends:\n  - name: a\n    type: ollama\n    url: http://h\n    timeout: soon\n  - name: a\n    type: openai\n    url: ftp://h\n    fallbacks: [zzz]\nlog_level: loud\ncolour: red\n")

	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"config", "check", good}, &stdout, &stderr); code != 0 {
		t.Errorf("good file: exit %d; stdout %q stderr %q", code, stdout.String(), stderr.String())
	}
	if got, want := stdout.String(), good+": ok\n"; got != want {
		t.Errorf("good file: stdout %q; want %q", got, want)
	}

	stdout.Reset()
	stderr.Reset()
	if code := run(context.Background(), []string{"config", "check", bad}, &stdout, &stderr); code == 0 {
		t.Errorf("bad file: exit 0; want non-zero")
	}
	for _, want := range []string{
		`line 6: backends[0].timeout: "soon" is not a duration (use a form like 250ms, 2s, 1m)`,
		`line 7: backends[1].name: "a" is also the name of backends[0]`,
		`line 9: backends[1].url: "ftp://h" is not an http(s) URL with a host`,
		`line 10: backends[1].fallbacks[0]: no backend is named "zzz"`,
		`line 11: log_level: "loud" is not one of debug, info, warn, error`,
		"line 12: unknown field colour",
	} {
		if !strings.Contains(stdout.String(), bad+": "+want) {
			t.Errorf("bad file: output lacks %q:\n%s", want, stdout.String())
		}
	}
	if !strings.Contains(stderr.String(), "6 problem(s)") {
		t.Errorf("bad file: stderr %q; want the problem count", stderr.String())
	}

	stdout.Reset()
	if code := run(context.Background(), []string{"config", "check"}, &stdout, io.Discard); code != 2 {
		t.Errorf("no file: exit %d; want 2", code)
	}
}

// closeNotifier is a listener that reports when it is closed, which
// http.Server.Shutdown does first: the test knows shutdown has begun.
type closeNotifier struct {
	net.Listener
	once   sync.Once
	closed chan struct{}
}

func (l *closeNotifier) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// A stream in flight when serve is told to stop completes; serveOn then
// returns nil and the port no longer accepts connections.
func TestGracefulShutdown(t *testing.T) {
	lines := []string{
		`{"model":"m","created_at":"2025-03-10T01:31:40Z","message":{"role":"assistant","content":"The"},"done":false}`,
		`{"model":"m","created_at":"2025-03-10T01:31:41Z","message":{"role":"assistant","content":" capital"},"done":false}`,
		`{"model":"m","created_at":"2025-03-10T01:31:42Z","message":{"role":"assistant","content":" is Paris."},"done":false}`,
		`{"model":"m","created_at":"2025-03-10T01:31:43Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"eval_count":4}`,
	}
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/chat" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-ndjson")
		fmt.Fprintln(w, lines[0])
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		case <-time.After(wait):
			return
		}
		for _, l := range lines[1:] {
			fmt.Fprintln(w, l)
			w.(http.Flusher).Flush()
		}
	}))
	defer backend.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cn := &closeNotifier{Listener: ln, closed: make(chan struct{})}
	addr := ln.Addr().String()
	cfg := config.Default()
	cfg.Listen = addr
	cfg.Data = t.TempDir()
	cfg.Retrieval.Disabled = true
	cfg.ShutdownTimeout = wait
	cfg.SetBackends([]config.Backend{{Type: config.TypeOllama, URL: backend.URL}})
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- serveOn(ctx, cn, cfg, slog.New(slog.DiscardHandler)) }()

	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/api/chat", strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"Capital of France?"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		resp *http.Response
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := client.Do(req)
		got <- result{resp, err}
	}()
	var resp *http.Response
	select {
	case r := <-got:
		if r.err != nil {
			t.Fatal(r.err)
		}
		resp = r.resp
	case <-time.After(wait):
		t.Fatal("no response head")
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}

	// Read lines in the background; each arrives on received.
	received := make(chan string, len(lines)+1)
	readErr := make(chan error, 1)
	go func() {
		br := bufio.NewReader(resp.Body)
		for {
			l, err := br.ReadString('\n')
			if l != "" {
				received <- l
			}
			if err != nil {
				readErr <- err
				return
			}
		}
	}()
	var body strings.Builder
	select {
	case l := <-received:
		body.WriteString(l)
	case <-time.After(wait):
		t.Fatal("first line did not arrive")
	}

	cancel() // as SIGTERM does
	select {
	case <-cn.closed:
	case <-time.After(wait):
		t.Fatal("shutdown did not begin")
	}
	select {
	case err := <-served:
		t.Fatalf("serveOn returned %v with a stream in flight", err)
	default:
	}
	close(release)

	select {
	case err := <-readErr:
		if err != io.EOF {
			t.Fatalf("reading the stream: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("stream did not end")
	}
	close(received)
	for l := range received {
		body.WriteString(l)
	}
	if want := strings.Join(lines, "\n") + "\n"; body.String() != want {
		t.Errorf("client got %q; want %q", body.String(), want)
	}

	select {
	case err := <-served:
		if err != nil {
			t.Errorf("serveOn returned %v; want nil", err)
		}
	case <-time.After(wait):
		t.Fatal("serveOn did not return after the stream ended")
	}
	if c, err := net.DialTimeout("tcp", addr, wait); err == nil {
		c.Close()
		t.Error("a new connection was accepted after shutdown")
	}
}

// On a machine without a GPU, --index auto starts on the CPU index and
// logs why; --index gpu refuses to start. On one with a GPU, both take it.
func TestServeIndexAutoFallsBackToCPU(t *testing.T) {
	cfg, err := loadServeConfig([]string{"--index", "auto", "--data", t.TempDir()}, io.Discard, io.Discard, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if gpu, err := gpuidx.Open(gpuidx.KindGPU, gpuidx.CPUConfig{}, gpuidx.GPUConfig{}, slog.New(slog.DiscardHandler)); err == nil {
		gpu.Close()
		for _, kind := range []string{gpuidx.KindAuto, gpuidx.KindGPU} {
			cfg.Retrieval.Index = kind
			rt, closeAll, err := openRetrieval(context.Background(), cfg, nil, slog.New(slog.DiscardHandler))
			if err != nil || rt.Library == nil {
				t.Fatalf("--index %s on a machine with a GPU: %v", kind, err)
			}
			closeAll()
		}
		return
	}
	var logs bytes.Buffer
	rt, closeAll, err := openRetrieval(context.Background(), cfg, nil, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	if rt.Library == nil || !strings.Contains(logs.String(), "no usable GPU, using the CPU index") || !strings.Contains(logs.String(), `"reason"`) {
		t.Errorf("auto without a GPU: library %v, logs %s", rt.Library != nil, logs.String())
	}
	cfg.Retrieval.Index = "gpu"
	if _, _, err := openRetrieval(context.Background(), cfg, nil, slog.New(slog.DiscardHandler)); !errors.Is(err, gpuidx.ErrNoGPU) {
		t.Errorf("--index gpu without a GPU: %v", err)
	}
}

// The dashboard's URL logged at start is one a browser can open: a
// wildcard address is reached on loopback.
func TestDashboardURL(t *testing.T) {
	for _, tt := range []struct{ addr, want string }{
		{"127.0.0.1:8080", "http://127.0.0.1:8080/ui/"},
		{"0.0.0.0:8080", "http://127.0.0.1:8080/ui/"},
		{"[::]:9000", "http://127.0.0.1:9000/ui/"},
		{":8080", "http://127.0.0.1:8080/ui/"},
		{"[::1]:8080", "http://[::1]:8080/ui/"},
		{"dso.example:80", "http://dso.example:80/ui/"},
		{"nonsense", ""},
	} {
		if got := dashboardURL(tt.addr); got != tt.want {
			t.Errorf("dashboardURL(%q) = %q; want %q", tt.addr, got, tt.want)
		}
	}
}
