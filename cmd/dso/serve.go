package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/proxy"
)

func init() {
	commands["serve"] = command{summary: "run the proxy", run: serve}
	commands["config check"] = command{summary: "validate a config file and print every problem", run: configCheck}
}

const serveUsage = `usage: dso serve [flags]

Runs the proxy. Settings come from the YAML file, then the environment, then
flags; later ones win.

Flags:
  --config FILE        YAML config file (env DSO_CONFIG)
  --listen ADDR        address to serve on (env DSO_LISTEN; default 127.0.0.1:8080)
  --backend TYPE:URL   a backend; repeatable; replaces the file's backends
                       (env DSO_BACKENDS, comma-separated). TYPE is openai
                       (any OpenAI-compatible server) or ollama (native API).
                       Default: ollama:http://127.0.0.1:11434
  --data DIR           where the embedded store lives (env DSO_DATA; default ./dso-data)
  --log-level LEVEL    debug, info, warn or error (default info)

Environment only:
  DSO_API_KEYS         comma-separated keys clients must send as
                       "Authorization: Bearer KEY"; unset means no client auth

Config file (every field optional):
  listen: 127.0.0.1:8080
  data: ./dso-data
  max_body_bytes: 33554432       # request body limit (413 beyond it)
  shutdown_timeout: 30s          # how long a stop waits for streams
  log_level: info
  api_keys: [key1, key2]
  backends:
    - name: local                # used in fallbacks, logs and metrics
      type: ollama               # openai | ollama
      url: http://127.0.0.1:11434
      models: ["llama*", "qwen*"]  # glob patterns; empty = every model
      embedding_model: nomic-embed-text  # empty = the chat model
      timeout: 5m                # wait for headers, and between body reads
      retries: 2                 # retries before the first byte; -1 = none
      retry_backoff: 200ms       # doubles each retry
      fallbacks: [cloud]         # tried in order after this one fails
    - name: cloud
      type: openai
      url: https://api.openai.com/v1
      api_key_env: OPENAI_API_KEY  # or api_key: ...
`

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// loadServeConfig merges file, environment and flags.
func loadServeConfig(args []string, stderr io.Writer, getenv func(string) string) (config.Config, error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, serveUsage) }
	file := fs.String("config", getenv(config.EnvConfig), "")
	listen := fs.String("listen", "", "")
	data := fs.String("data", "", "")
	level := fs.String("log-level", "", "")
	var backends stringList
	fs.Var(&backends, "backend", "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config.Config{}, errHelp
		}
		return config.Config{}, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dso serve: unexpected argument %q\n", fs.Arg(0))
		return config.Config{}, errUsage
	}
	cfg := config.Default()
	if *file != "" {
		var err error
		if cfg, err = config.Load(*file); err != nil {
			return cfg, err
		}
	}
	if err := cfg.ApplyEnv(getenv); err != nil {
		return cfg, err
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	if *data != "" {
		cfg.Data = *data
	}
	if *level != "" {
		cfg.LogLevel = *level
	}
	if len(backends) > 0 {
		bs, err := config.ParseBackendSpecs(backends)
		if err != nil {
			return cfg, err
		}
		cfg.SetBackends(bs)
	}
	return cfg, cfg.Validate()
}

// errHelp reports that --help was asked for and printed.
var errHelp = errors.New("help")

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := loadServeConfig(args, stderr, os.Getenv)
	if errors.Is(err, errHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	return serveOn(ctx, ln, cfg, log)
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// serveOn runs the proxy on ln until ctx is done, then shuts down
// gracefully: no new connections, streams in flight may finish within
// cfg.ShutdownTimeout.
func serveOn(ctx context.Context, ln net.Listener, cfg config.Config, log *slog.Logger) error {
	router, err := providers.NewRouter(cfg.Backends, nil)
	if err != nil {
		return err
	}
	srv := proxy.New(proxy.Options{
		Router:       router,
		Logger:       log,
		APIKeys:      cfg.APIKeys,
		MaxBodyBytes: cfg.MaxBodyBytes,
	})
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    1 << 20,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	names := make([]string, 0, len(cfg.Backends))
	for _, b := range cfg.Backends {
		names = append(names, b.Type+":"+b.Name)
	}
	log.Info("dso listening", "addr", ln.Addr().String(), "backends", names)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down; waiting for requests in flight", "timeout", cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func configCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) != 1 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(stderr, "usage: dso config check FILE")
		return errUsage
	}
	data, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	ps := config.Check(data)
	if len(ps) == 0 {
		fmt.Fprintf(stdout, "%s: ok\n", args[0])
		return nil
	}
	for _, p := range ps {
		fmt.Fprintf(stdout, "%s: %s\n", args[0], p.Error())
	}
	return fmt.Errorf("%d problem(s) in %s", len(ps), args[0])
}
