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
	"github.com/dso-proxy/dso/learn"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/proxy"
	"github.com/dso-proxy/dso/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/net/netutil"
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
  --redis URL          keep the library in Redis instead, shared by every
                       replica given the same URL (env DSO_REDIS), e.g.
                       redis://redis:6379/0; see README.md for its settings
  --log-level LEVEL    debug, info, warn or error (default info)
  --index KIND         search index: cpu, gpu or auto (the GPU when one is
                       usable through OpenCL, else the CPU; says why)

Environment only:
  DSO_API_KEYS         comma-separated keys clients must send as
                       "Authorization: Bearer KEY"; unset means no client auth
  DSO_ADMIN_KEYS       comma-separated keys for the experience API
                       (/v1/experiences); unset means the client keys
  DSO_OPEN_LIBRARY     1 opens the experience API and feedback to anyone
                       who can reach a non-loopback address with no keys
                       set (open_library: true); see "Keys and addresses"
  DSO_TRUST_VOTER_HEADER  1 takes X-DSO-Voter as a member of the client's
                       key (trust_voter_header: true); 0 turns it off
  DSO_EMBEDDER         retrieval.embedder (hash[:DIM], wordvec:FILE,
                       model:NAME, backend)

Request headers: X-DSO-Domain (domain prefix), X-DSO-Top-K, X-DSO-Min-Confidence,
X-DSO-Min-Score (auto or -1..1), X-DSO-Inject: off. Response headers:
X-DSO-Trace-Id, X-DSO-Experiences (ids injected), X-DSO-Scores (their
relevance), X-DSO-Gate (the relevance they had to clear), X-DSO-Degraded (why
retrieval was skipped: timeout, embed_error, space_unavailable, ...).

The library lives in one embedding space (retrieval.embedder): every
experience and every question is embedded there, whatever backend answers.
The default, hash, is built in (no model, no network call, the same on every
node); model:NAME uses a backend's embedding model. Changing it re-embeds the
stored texts in the background. An experience is injected only when its
relevance (score less the question's background) clears a gate calibrated on
the library itself; min_score sets it by hand.

Keys and addresses: on a loopback address (127.0.0.1, ::1, localhost) only
this machine can reach dso, and everything works without keys. On any other
address (0.0.0.0, ::, ":8080", a LAN IP or a name for one) with neither
DSO_API_KEYS nor DSO_ADMIN_KEYS set, chat still works, but the experience API
(reads and writes) and feedback (POST /v1/feedback, X-DSO-Feedback) are
refused with 403 until DSO_ADMIN_KEYS is set, or DSO_OPEN_LIBRARY=1 opens
them to anyone: otherwise anyone who reaches the port could read every
user's lessons and rewrite what every user is told. dso logs a warning at
start for each of these, and for chat open to anyone (who then spends the
backends' API keys, if they have any).

Config file (every field optional):
  listen: 127.0.0.1:8080
  data: ./dso-data
  redis: redis://127.0.0.1:6379/0  # shared store for several replicas; unset = SQLite under data
  max_body_bytes: 33554432       # request body limit (413 beyond it)
  shutdown_timeout: 30s          # how long a stop waits for streams
  log_level: info
  api_keys: [key1, key2]
  admin_keys: [admin1]
  open_library: false            # true: no keys needed for the library beyond loopback
  trust_voter_header: false      # true: X-DSO-Voter names a member within a client key
  node_id: local                 # recorded on experiences made here
  network:                       # publish this node's log under /log/ID/
    id: hanzo
    key_file: ./node.key         # from dso keygen
    share: [code]                # domain prefixes published; none by default
    sync_interval: 10s           # between syncs of each peer
    peers:                       # logs followed, admitted and mirrored under /log/ID/mirror/NAME/
      - {url: "https://peer.example", key: "peerA+1a2b3c4d+AbC..."}
      - {url: "https://new.example", key: "nodeN+...", quarantine: true}  # shown, not injected
  retrieval:
    disabled: false
    index: cpu                   # cpu | gpu | auto
    embedder: hash               # the library's space: hash[:DIM] | wordvec:FILE | model:NAME | backend
    embedding_model: nomic-embed-text  # the model of "backend" (then the default embedder)
    budget: 250ms                # past it, requests go on without injection
    top_k: 5
    inject_whole: 0              # a domain of at most this many is injected whole (gated); 0 = off
    min_confidence: 0.3          # not injected below it (negative: no floor)
    min_score: 0.2               # relevance needed to inject; unset = calibrated gate
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
      embedding_model: nomic-embed-text  # the first one set is the library's space
      timeout: 5m                # wait for headers, and between body reads
      retries: 2                 # retries before the first byte; -1 = none
      retry_backoff: 200ms       # doubles each retry
      fallbacks: [cloud]         # tried in order after this one fails
      injection: {off: false, top_k: 3, min_confidence: 0.5, min_score: 0.1, domain: code}
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
	redisURL := fs.String("redis", "", "")
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
	if *redisURL != "" {
		cfg.Redis = config.Secret(*redisURL)
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
	rt, closeLib, err := openRetrieval(ctx, cfg, router, log)
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
			Logger:  log,
		})
	}
	node, err := openNetwork(ctx, cfg, rt.Library, log)
	if err != nil {
		return err
	}
	defer node.close() // after the server has stopped
	addr := ln.Addr().String()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), gpuidx.NewGPUCollector())
	node.register(reg)
	srv = proxy.New(proxy.Options{
		Registry:     reg,
		Router:       router,
		Logger:       log,
		APIKeys:      cfg.APIKeys,
		AdminKeys:    cfg.AdminKeys,
		MaxBodyBytes: cfg.MaxBodyBytes,
		BodyTimeout:  cfg.BodyTimeout,
		MaxInFlight:  cfg.MaxInFlight,

		MaxBytesInFlight: cfg.MaxBytesInFlight,
		Retrieval:        rt,
		Learner:          grader(learner),
		OpenLibrary:      libraryOpen(addr, cfg),
		TrustVoterHeader: cfg.TrustVoterHeader,
		Network:          node.reporter(),
	})
	defer srv.Close() // after Shutdown: stores the traces still queued
	if learner != nil {
		learner.Start(context.WithoutCancel(ctx))
		defer learner.Close() // pending feedback stays queued for the next start
	}
	if err := node.start(ctx, cfg); err != nil {
		return err
	}
	handler := node.handler(srv)
	hs := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    1 << 20,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	names := make([]string, 0, len(cfg.Backends))
	for _, b := range cfg.Backends {
		names = append(names, b.Type+":"+b.Name)
	}
	warnExposure(log, addr, cfg)
	log.Info("dso listening", "addr", addr, "backends", names)
	if cfg.MaxConnections > 0 {
		// Past the limit, connections wait in the kernel's backlog: the
		// descriptors of dso stay its own.
		ln = netutil.LimitListener(ln, cfg.MaxConnections)
	}
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

// libraryOpen decides proxy.Options.OpenLibrary from the address dso
// listens on: without keys, the experience library and feedback are open
// only where no one else can reach dso, or where the operator opened them.
// It takes the bound address, not the configured one: a name that
// resolves to a loopback IP is as private as 127.0.0.1.
func libraryOpen(addr string, cfg config.Config) bool {
	return cfg.OpenLibrary || config.IsLoopback(addr)
}

// warnExposure logs, once at start, what anyone who can reach a
// non-loopback address may do for want of keys.
func warnExposure(log *slog.Logger, addr string, cfg config.Config) {
	if config.IsLoopback(addr) {
		return
	}
	if len(cfg.APIKeys) == 0 {
		var keyed []string
		for _, b := range cfg.Backends {
			if b.APIKey != "" {
				keyed = append(keyed, b.Name)
			}
		}
		if len(keyed) > 0 {
			log.Warn("no client keys on a non-loopback address: anyone who can reach it spends the backends' API keys; set "+config.EnvAPIKeys+" to require a key",
				"addr", addr, "backends_with_keys", keyed)
		} else {
			log.Warn("no client keys on a non-loopback address: anyone who can reach it can use the backends through dso; set "+config.EnvAPIKeys+" to require a key",
				"addr", addr)
		}
	}
	if len(cfg.APIKeys) > 0 || len(cfg.AdminKeys) > 0 {
		return
	}
	if cfg.OpenLibrary {
		log.Warn("the experience library and feedback are open to anyone who can reach this address ("+config.EnvOpenLibrary+", open_library)", "addr", addr)
		return
	}
	log.Warn("no keys on a non-loopback address: the experience API and feedback are refused (403); set "+config.EnvAdminKeys+
		" (admin_keys) to use them with a key, or "+config.EnvOpenLibrary+"=1 (open_library: true) to open them to anyone who can reach it",
		"addr", addr)
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

// openRetrieval opens the store under cfg.Data, rebuilds the index, opens
// the library in its embedding space and follows the store's changes. The
// returned func stops following and closes them.
func openRetrieval(ctx context.Context, cfg config.Config, router *providers.Router, log *slog.Logger) (proxy.Retrieval, func(), error) {
	rc := cfg.Retrieval
	if rc.Disabled {
		log.Info("retrieval disabled by config")
		return proxy.Retrieval{}, func() {}, nil
	}
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return proxy.Retrieval{}, nil, err
	}
	closeStore := func() {
		if err := st.Close(); err != nil {
			log.Warn("closing the store", "err", err.Error())
		}
	}
	idx, err := gpuidx.Open(rc.Index, gpuidx.CPUConfig{}, gpuidx.GPUConfig{}, log)
	if err != nil {
		closeStore()
		return proxy.Retrieval{}, nil, fmt.Errorf("--index %s: %w", rc.Index, err)
	}
	lib, err := openLibrary(ctx, st, cfg, rc.CacheSize, idx, router, withLogger(log))
	if err != nil {
		idx.Close()
		closeStore()
		return proxy.Retrieval{}, nil, err
	}
	// dso import, dso learn and other serves write the same file, or other
	// replicas the same Redis: follow the change log so that what they
	// write is searched here too.
	followCtx, stopFollowing := context.WithCancel(ctx)
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		lib.Follow(followCtx, followInterval)
	}()
	closeAll := func() {
		stopFollowing()
		<-followed // before the index and store it uses close
		lib.Close()
		idx.Close()
		closeStore()
	}
	log.Info("experience library open", "experiences", lib.Len(), "store", storeKind(cfg), "space", lib.Space().Name,
		"moving_to", lib.Moving(), "to_reembed", lib.Stale())
	warnSpaceUse(cfg, lib.Space(), log)
	return proxy.Retrieval{
		Library: lib, Budget: rc.Budget, TopK: rc.TopK, MinConfidence: rc.MinConfidence, MinScore: rc.MinScore, InjectWhole: rc.InjectWhole,
		MaxTokens: rc.MaxTokens, NodeID: cfg.NodeID, Models: rc.Models,
	}, closeAll, nil
}

// warnSpaceUse says, once at start, where the one library space differs
// from what the configuration might suggest: backends whose own embedding
// model is not the library's (their questions are embedded in the
// library's space all the same).
func warnSpaceUse(cfg config.Config, sp library.Space, log *slog.Logger) {
	for _, b := range cfg.Backends {
		if b.EmbeddingModel != "" && "model:"+b.EmbeddingModel != sp.Name {
			log.Warn("backend embedding_model is not the library's embedding space; questions to it are embedded in the library's space",
				"backend", b.Name, "embedding_model", b.EmbeddingModel, "space", sp.Name)
		}
	}
}

// servedStore is a store serve can run on: what the library, the learner
// and the proxy need of it, and Close.
type servedStore interface {
	library.Store
	learn.Store
	proxy.Store
	Close() error
}

// openStore opens the shared Redis store when cfg names one, else the
// SQLite file under cfg.Data.
func openStore(ctx context.Context, cfg config.Config, log *slog.Logger) (servedStore, error) {
	rc := cfg.Retrieval
	if cfg.Redis != "" {
		st, err := store.OpenRedis(ctx, string(cfg.Redis), store.RedisOptions{
			MaxTraces: rc.MaxTraces, TraceMaxAge: rc.TraceMaxAge, Logger: log,
		})
		if err != nil {
			return nil, fmt.Errorf("--redis: %w", err)
		}
		return st, nil
	}
	st, err := store.OpenDir(ctx, cfg.Data, store.Options{MaxTraces: rc.MaxTraces, TraceMaxAge: rc.TraceMaxAge})
	if err != nil {
		return nil, err
	}
	return st, nil
}

func storeKind(cfg config.Config) string {
	if cfg.Redis != "" {
		return "redis"
	}
	return "sqlite:" + cfg.Data
}

type libraryOption func(*library.Config)

func withLogger(log *slog.Logger) libraryOption {
	return func(c *library.Config) { c.Logger = log }
}

// openLibrary builds the library over st in the configured embedding
// space, with the configured seed, so that serve, import, learn and eval
// map vectors the same way. router serves model: spaces; nil builds one
// from cfg.
func openLibrary(ctx context.Context, st library.Store, cfg config.Config, cacheSize int, idx gpuidx.Index, router *providers.Router, opts ...libraryOption) (*library.Library, error) {
	rc := cfg.Retrieval
	if router == nil {
		var err error
		if router, err = providers.NewRouter(cfg.Backends, nil); err != nil {
			return nil, err
		}
	}
	sp, err := librarySpace(rc, router)
	if err != nil {
		return nil, err
	}
	lc := library.Config{Store: st, Space: sp, Index: idx, Seed: rc.Seed, CacheSize: cacheSize,
		Previous: func(name string) (library.Space, bool) { return previousSpace(name, router) },
		NewIndex: func() (gpuidx.Index, error) {
			return gpuidx.Open(rc.Index, gpuidx.CPUConfig{}, gpuidx.GPUConfig{}, slog.New(slog.DiscardHandler))
		},
	}
	if file, ok := rc.Adapters[sp.Model]; ok && sp.Model != "" {
		if lc.Adapter, err = align.LoadAdapter(file); err != nil {
			return nil, fmt.Errorf("retrieval.adapters[%s]: %w", sp.Model, err)
		}
	}
	for _, o := range opts {
		o(&lc)
	}
	return library.New(ctx, lc)
}

// librarySpace resolves retrieval.embedder to the library's space; router
// serves model: spaces.
func librarySpace(rc config.Retrieval, router *providers.Router) (library.Space, error) {
	spec := rc.LibraryEmbedder()
	if model, ok := strings.CutPrefix(spec, "model:"); ok {
		sp, err := routedSpace(router, spec, model)
		if err != nil {
			return library.Space{}, fmt.Errorf("retrieval.embedder %s: %w", spec, err)
		}
		return sp, nil
	}
	emb, name, err := localEmbedder(spec)
	if err != nil {
		return library.Space{}, err
	}
	return library.Space{Name: name, Embedder: emb, Model: name}, nil
}

// previousSpace rebuilds the embedder of an earlier library space, when
// this configuration can still embed there: the built-in hash spaces, and
// backend models the router still serves (spaces named by a bare model
// name come from before spaces were named).
func previousSpace(name string, router *providers.Router) (library.Space, bool) {
	if strings.HasPrefix(name, "hash") {
		emb, n, err := localEmbedder(name)
		if err != nil || n != name {
			return library.Space{}, false
		}
		return library.Space{Name: name, Embedder: emb, Model: name}, true
	}
	if strings.HasPrefix(name, "wordvec:") {
		return library.Space{}, false // the file is not known
	}
	sp, err := routedSpace(router, name, strings.TrimPrefix(name, "model:"))
	return sp, err == nil
}

// routedSpace is the space name of embedding model, embedded by the
// backend router sends it to; an error when no backend serves it.
func routedSpace(router *providers.Router, name, model string) (library.Space, error) {
	if _, err := router.Route(model); err != nil {
		return library.Space{}, err
	}
	return library.Space{Name: name, Embedder: routedEmbedder{router}, Model: model}, nil
}

// routedEmbedder embeds with the backend the router sends a model to,
// then its fallbacks.
type routedEmbedder struct{ r *providers.Router }

func (e routedEmbedder) Embed(ctx context.Context, model string, texts []string) ([][]float32, error) {
	chain, err := e.r.Route(model)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, b := range chain {
		vs, err := b.Embed(ctx, model, texts)
		if err == nil {
			return vs, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// localEmbedder returns a local embedder for "hash[:DIM]" or
// "wordvec:FILE" and the name of its space.
func localEmbedder(spec string) (library.Embedder, string, error) {
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
		name = "hash:" + config.DefaultHashDim
	}
	return library.EmbedFunc(e.Embed), name, nil
}
