package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/gpuidx"
	"github.com/dso-proxy/dso/learn"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/proxy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

func init() {
	commands["serve"] = command{summary: "run the proxy", about: serveAbout, more: serveMore, run: serve}
	commands["config check"] = command{
		summary: "validate a config file and print every problem",
		args:    "FILE",
		about: `Prints each problem with its line and field (unknown keys with the nearest
known one, values that do not fit), and each file the configuration names
that serve could not read (key_file, wordvec:FILE, adapters), from the
working directory as serve reads them; "FILE: ok" when there is none. It
reads the file alone: the environment (DSO_*) and flags are not applied.`,
		run: configCheck,
	}
}

const serveAbout = `Settings come from the YAML file, then the environment, then flags; later
ones win.`

// serveMore is serve's help after its flags.
const serveMore = `Environment only:
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
  DSO_ALLOWED_HOSTS    allowed_hosts, comma-separated
  DSO_TRUSTED_PROXIES  trusted_proxies, comma-separated

Request headers: X-DSO-Domain (domain prefix; retrieval spans every network
joined unless it narrows it), X-DSO-Top-K, X-DSO-Min-Confidence,
X-DSO-Min-Score (auto or -1..1), X-DSO-Inject: off; they only narrow what
the configuration allows, unless the request's key opens the experience API
(an admin key where admin_keys are set). Response headers:
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
  body_timeout: 1m               # to receive a whole body (408 past it)
  min_body_rate: 1024            # bytes a second a body must keep up (408 body_too_slow); -1 = none
  max_connections: 4096          # open client connections; more wait to be accepted
  max_connections_per_client: 1024  # of those, from one address (closed past it); -1 = none
  max_in_flight: 1024            # requests served at once (503 beyond)
  max_in_flight_per_client: 256  # of those, from one address; -1 = none
  memory_limit: 4GiB             # Go memory limit (env DSO_MEMORY_LIMIT); unset = what dso holds + max(64MiB, 1/16 of it), following the library; off = none
  allowed_hosts: [dso.example.com, .corp.example]  # Host names answered besides IPs, localhost, listen's
  trusted_proxies: [10.0.0.2]    # load balancers whose X-Forwarded-For names the client
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
    peers:                       # logs followed, admitted and mirrored under /log/ID/mirror/NAME+HASH/
      - {url: "https://peer.example", key: "peerA+1a2b3c4d+AbC..."}
      - {url: "https://new.example", key: "nodeN+...", quarantine: true}  # shown, not injected
    seed: 0                      # the network's lift seed; 0 = retrieval.seed (another: no codes published)
    trust:                       # default: the peers, and what their vouches reach to depth 3
      keys: ["nodeZ+..."]        # trusted outright, wherever their log is found
      depth: 3                   # how far trust passes along vouches (1: the peers and keys only)
      max_vouches: 16            # how many of one node's vouches count
      retire_below: 0.66         # votes retire a lesson below this trust-weighted approval
      min_vote_weight: 2         # ...when they weigh this much together (each node at most 1)
      no_votes: false            # true: publish no votes
  networks:                      # instead of network: several, each its own log, peers, shares
    - {id: code, key_file: ./node.key, share: [code]}   # peers, sync_interval as above
    - {id: research, key_file: ./node.key, share: [research], seed: 7}
  retrieval:
    disabled: false
    index: cpu                   # cpu | gpu | auto
    embedder: hash               # the library's space: hash[:DIM] | wordvec:FILE | model:NAME | backend
    embedding_model: nomic-embed-text  # the model of "backend" (then the default embedder)
    budget: 250ms                # past it, requests go on without injection
    top_k: 5
    inject_whole: 0              # a domain of at most this many is injected whole (gated); 0 = off
    inject_position: user        # user: with the newest user turn (keeps the backend's prompt cache) | system
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
      type: ollama               # openai | ollama | anthropic
      url: http://127.0.0.1:11434
      models: ["llama*", "qwen*"]  # glob patterns; empty = every model
      embedding_model: nomic-embed-text  # the first one set is the library's space
      timeout: 5m                # wait for headers, and between body reads
      retries: 2                 # retries before the first byte; -1 = none
      retry_backoff: 200ms       # doubles each retry
      fallbacks: [cloud]         # tried in order after this one fails
      injection: {off: false, top_k: 3, min_confidence: 0.5, min_score: 0.1, domain: code, position: user}
      context_tokens: 8192       # the models' context: notes take only the room a request leaves; 0 = unknown
      responses: translate       # /v1/responses: native (the backend's own) | translate; default native for api.openai.com
    - name: cloud
      type: openai
      url: https://api.openai.com/v1
      api_key_env: OPENAI_API_KEY  # or api_key: ...
`

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// loadServeConfig merges file, environment and flags; --help prints
// serve's help on stdout and returns errHelp.
func loadServeConfig(args []string, stdout, stderr io.Writer, getenv func(string) string) (config.Config, error) {
	fs := newFlagSet("serve")
	file := fs.String("config", getenv(config.EnvConfig), "YAML config `FILE` (env DSO_CONFIG)")
	listen := fs.String("listen", "", "`ADDR` to serve on, host:port (env DSO_LISTEN; default "+config.DefaultListen+")")
	data := fs.String("data", "", "`DIR` where the embedded store lives (env DSO_DATA; default "+config.DefaultData+")")
	redisURL := fs.String("redis", "", "keep the library in Redis at `URL` instead, shared by every replica given the same URL (env DSO_REDIS), e.g. redis://redis:6379/0; see README.md for its settings")
	level := fs.String("log-level", "", "`LEVEL`: debug, info, warn or error (default info)")
	index := fs.String("index", "", "search index `KIND`: cpu, gpu or auto (the GPU when one is usable through OpenCL, else the CPU; says why)")
	var backends stringList
	fs.Var(&backends, "backend", "a backend `TYPE:URL`; repeatable; replaces the file's backends (env DSO_BACKENDS, comma-separated). TYPE is openai (any OpenAI-compatible server), ollama (native API) or anthropic (the Messages API; no URL: Anthropic's). Default: "+config.DefaultBackend)
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return config.Config{}, err
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

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := loadServeConfig(args, stdout, stderr, os.Getenv)
	if err != nil {
		return err
	}
	log, closeLog := newLogger(stderr, cfg.LogLevel)
	defer closeLog()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	return serveOn(ctx, ln, cfg, log)
}

// newLogger is serve's logger: JSON lines to w at level, written in
// batches (see batchWriter). close writes what is still waiting.
func newLogger(w io.Writer, level string) (log *slog.Logger, close func()) {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	bw := newBatchWriter(w)
	h := urgentFlush{slog.NewJSONHandler(bw, &slog.HandlerOptions{Level: l}), bw}
	return slog.New(h), func() { _ = bw.Close() }
}

// proxyOptions are the proxy's options from cfg, but for its registry,
// retrieval, learner and network, which serveOn opens.
func proxyOptions(cfg config.Config, router *providers.Router, log *slog.Logger, addr string) (proxy.Options, error) {
	trusted, err := config.ParsePrefixes(cfg.TrustedProxies)
	if err != nil {
		return proxy.Options{}, fmt.Errorf("trusted_proxies: %w", err) // Validate has said so already
	}
	return proxy.Options{
		Router:       router,
		Logger:       log,
		APIKeys:      cfg.APIKeys,
		AdminKeys:    cfg.AdminKeys,
		MaxBodyBytes: cfg.MaxBodyBytes,
		BodyTimeout:  cfg.BodyTimeout,
		MaxInFlight:  cfg.MaxInFlight,
		MinBodyRate:  cfg.MinBodyRate,

		MaxInFlightPerClient: cfg.MaxInFlightPerClient,
		AllowedHosts:         allowedHosts(cfg),
		TrustedProxies:       trusted,

		MaxBytesInFlight: cfg.MaxBytesInFlight,
		OpenLibrary:      libraryOpen(addr, cfg),
		TrustVoterHeader: cfg.TrustVoterHeader,
	}, nil
}

// serveOn runs the proxy on ln until ctx is done, then shuts down
// gracefully: no new connections, streams in flight may finish within
// cfg.ShutdownTimeout.
func serveOn(ctx context.Context, ln net.Listener, cfg config.Config, log *slog.Logger) error {
	router, err := providers.NewRouter(cfg.Backends, nil)
	if err != nil {
		return err
	}
	rt, closeLib, ln, err := openRetrievalWaiting(ctx, ln, cfg, router, log)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return nil // stopped before the store answered
		}
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
	node, err := openNetworks(ctx, cfg, rt.Library, log)
	if err != nil {
		return err
	}
	defer node.close() // after the server has stopped
	addr := ln.Addr().String()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), gpuidx.NewGPUCollector())
	node.register(reg)
	opts, err := proxyOptions(cfg, router, log, addr)
	if err != nil {
		return err
	}
	opts.Registry, opts.Retrieval, opts.Learner, opts.Network = reg, rt, grader(learner), node.reporter()
	srv = proxy.New(opts)
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
	log.Info("dso listening", "addr", addr, "dashboard", dashboardURL(addr), "backends", names)
	ln = srv.Listener(ln, cfg.MaxConnections, cfg.MaxConnectionsPerClient)
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

// allowedHosts is what Host names dso answers besides addresses and
// loopback names: the configured ones and the name it was told to listen
// on.
func allowedHosts(cfg config.Config) []string {
	hosts := slices.Clone(cfg.AllowedHosts)
	if h, _, err := net.SplitHostPort(cfg.Listen); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	return hosts
}

// dashboardURL is where the dashboard of a dso serving addr is: on the
// loopback address for a wildcard one (0.0.0.0, ::), which is no address
// to open.
func dashboardURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/ui/"
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
	fs := newFlagSet("config check")
	if err := parseOnly(fs, args, stdout, stderr); err != nil {
		return err
	}
	switch fs.NArg() {
	case 0:
		return usageError(stderr, fs.Name(), "missing the config FILE to check")
	case 1:
	default:
		return usageError(stderr, fs.Name(), "unexpected argument %q", fs.Arg(1))
	}
	file := fs.Arg(0)
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	ps := config.CheckAll(data)
	if len(ps) == 0 {
		fmt.Fprintf(stdout, "%s: ok\n", file)
		return nil
	}
	for _, p := range ps {
		fmt.Fprintf(stdout, "%s: %s\n", file, p.Error())
	}
	return fmt.Errorf("%d problem(s) in %s", len(ps), file)
}

// grader keeps a nil *learn.Learner a nil interface.
func grader(l *learn.Learner) proxy.Grader {
	if l == nil {
		return nil
	}
	return l
}
