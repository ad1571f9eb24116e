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
	"path/filepath"
	"strings"
	"time"

	"github.com/dso-proxy/dso/align"
	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/gpuidx"
	"github.com/dso-proxy/dso/inject"
	"github.com/dso-proxy/dso/learn"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/proxy"
	"github.com/dso-proxy/dso/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
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
  --index KIND         search index: cpu, gpu or auto (the GPU when one is
                       usable through OpenCL, else the CPU; says why)

Environment only:
  DSO_API_KEYS         comma-separated keys clients must send as
                       "Authorization: Bearer KEY"; unset means no client auth
  DSO_ADMIN_KEYS       comma-separated keys for the experience API
                       (/v1/experiences); unset means the client keys
  DSO_EMBEDDER         retrieval.embedder (backend, wordvec:FILE, hash[:DIM])

Request headers: X-DSO-Domain (domain prefix), X-DSO-Top-K, X-DSO-Min-Confidence,
X-DSO-Inject: off. Response headers: X-DSO-Trace-Id, X-DSO-Experiences (ids
injected), X-DSO-Degraded (why retrieval was skipped: timeout, embed_error, ...).

Config file (every field optional):
  listen: 127.0.0.1:8080
  data: ./dso-data
  max_body_bytes: 33554432       # request body limit (413 beyond it)
  shutdown_timeout: 30s          # how long a stop waits for streams
  log_level: info
  api_keys: [key1, key2]
  admin_keys: [admin1]
  node_id: local                 # recorded on experiences made here
  retrieval:
    disabled: false
    index: cpu                   # cpu | gpu | auto
    embedder: backend            # backend | wordvec:FILE | hash[:DIM]
    embedding_model: nomic-embed-text  # embeds experiences added by API/import
    budget: 250ms                # past it, requests go on without injection
    top_k: 5
    min_confidence: 0
    max_tokens: 1024             # size of the injected note
    seed: 0                      # canonical lift seed; same on every node
    adapters: {my-embed-model: ./my-model.dsoalign}  # from dso align fit
    cache_size: 4096             # cached query embeddings
    max_traces: 100000
    trace_max_age: 720h
    models:                      # per-model overrides, first match wins
      - {pattern: "gpt-4o*", top_k: 3, domain: code}
      - {pattern: "*-embed*", off: true}
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
      injection: {off: false, top_k: 3, min_confidence: 0.5, domain: code}
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
	index := fs.String("index", "", "")
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
	if *index != "" {
		cfg.Retrieval.Index = *index
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
	rt, closeLib, err := openRetrieval(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeLib()
	var srv *proxy.Server
	var learner *learn.Learner
	if rt.Library != nil {
		learner = learn.NewLearner(learn.FeedbackConfig{
			Library: rt.Library,
			Chat:    learn.Backend{Router: router},
			Space:   func(model string) (library.Embedder, string) { return srv.EmbedSpace(model) },
			Logger:  log,
		})
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), gpuidx.NewGPUCollector())
	srv = proxy.New(proxy.Options{
		Registry:     reg,
		Router:       router,
		Logger:       log,
		APIKeys:      cfg.APIKeys,
		AdminKeys:    cfg.AdminKeys,
		MaxBodyBytes: cfg.MaxBodyBytes,
		Retrieval:    rt,
		Learner:      grader(learner),
	})
	defer srv.Close() // after Shutdown: stores the traces still queued
	if learner != nil {
		learner.Start(context.WithoutCancel(ctx))
		defer learner.Close() // pending feedback stays queued for the next start
	}
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

// grader keeps a nil *learn.Learner a nil interface.
func grader(l *learn.Learner) proxy.Grader {
	if l == nil {
		return nil
	}
	return l
}

// followInterval is how often serve reads the store's change log: other
// processes' writes are searched here within about a second, for one
// indexed read a second when nothing changed.
const followInterval = time.Second

// openRetrieval opens the store under cfg.Data, rebuilds the index, loads
// the embedder and adapters, and starts following the store's changes. The
// returned func stops following and closes the index and the store.
func openRetrieval(ctx context.Context, cfg config.Config, log *slog.Logger) (proxy.Retrieval, func(), error) {
	rc := cfg.Retrieval
	if rc.Disabled {
		log.Info("retrieval disabled by config")
		return proxy.Retrieval{}, func() {}, nil
	}
	st, err := store.OpenDir(ctx, cfg.Data, store.Options{MaxTraces: rc.MaxTraces, TraceMaxAge: rc.TraceMaxAge})
	if err != nil {
		return proxy.Retrieval{}, nil, err
	}
	closeStore := func() {
		if err := st.Close(); err != nil {
			log.Warn("closing the store", "err", err.Error())
		}
	}
	emb, name, err := localEmbedder(rc.Embedder)
	if err != nil {
		closeStore()
		return proxy.Retrieval{}, nil, err
	}
	idx, err := gpuidx.Open(rc.Index, gpuidx.CPUConfig{}, gpuidx.GPUConfig{}, log)
	if err != nil {
		closeStore()
		return proxy.Retrieval{}, nil, fmt.Errorf("--index %s: %w", rc.Index, err)
	}
	closeAll := func() {
		idx.Close()
		closeStore()
	}
	lib, err := openLibrary(ctx, st, rc, rc.CacheSize, idx)
	if err != nil {
		closeAll()
		return proxy.Retrieval{}, nil, err
	}
	// dso import, dso learn and other serves write the same file: follow
	// its change log so that what they write is searched here too.
	followCtx, stopFollowing := context.WithCancel(ctx)
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		lib.Follow(followCtx, followInterval)
	}()
	closeAll = func() {
		stopFollowing()
		<-followed // before the index and store it uses close
		idx.Close()
		closeStore()
	}
	expModel := rc.EmbeddingModel
	if expModel == "" && len(cfg.Backends) > 0 {
		expModel = cfg.Backends[0].EmbeddingModel
	}
	// Loading a BPE table takes ~0.1-0.2 s the first time: do it now, not
	// inside the first request's retrieval.
	go func() {
		for _, m := range []string{"gpt-4o", "gpt-4"} {
			inject.CounterFor(m).Count("warm")
		}
	}()
	log.Info("experience library ready", "experiences", lib.Len(), "data", cfg.Data, "embedder", rc.Embedder)
	return proxy.Retrieval{
		Library: lib, Embedder: emb, EmbedderName: name, ExperienceModel: expModel,
		Budget: rc.Budget, TopK: rc.TopK, MinConfidence: rc.MinConfidence, MaxTokens: rc.MaxTokens, NodeID: cfg.NodeID,
		Models: rc.Models,
	}, closeAll, nil
}

// openLibrary builds the library over st with the configured seed and
// adapters, so that serve, import and learn map vectors the same way.
func openLibrary(ctx context.Context, st *store.SQLite, rc config.Retrieval, cacheSize int, idx gpuidx.Index) (*library.Library, error) {
	adapters := map[string]*align.Adapter{}
	for model, file := range rc.Adapters {
		a, err := align.LoadAdapter(file)
		if err != nil {
			return nil, fmt.Errorf("retrieval.adapters[%s]: %w", model, err)
		}
		adapters[model] = a
	}
	return library.New(ctx, library.Config{Store: st, Index: idx, Seed: rc.Seed, Adapters: adapters, CacheSize: cacheSize})
}

// localEmbedder returns the configured local embedder, or nil for
// "backend". "wordvec:FILE" is the config's name for eval's "vectors:FILE".
func localEmbedder(spec string) (library.Embedder, string, error) {
	if spec == "" || spec == "backend" {
		return nil, "", nil
	}
	if f, ok := strings.CutPrefix(spec, "wordvec:"); ok {
		spec = "vectors:" + f
	}
	e, err := openEmbedder(spec)
	if err != nil {
		return nil, "", fmt.Errorf("retrieval.embedder: %w", err)
	}
	name := spec
	if f, ok := strings.CutPrefix(spec, "vectors:"); ok {
		name = "wordvec:" + filepath.Base(f)
	} else if spec == "hash" {
		name = "hash:2048"
	}
	return library.EmbedFunc(e.Embed), name, nil
}
