package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/store"
	"github.com/dso-proxy/dso/ui"
	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options configure a Server. Zero fields take the default named beside them.
type Options struct {
	// Router picks backends by model. Required.
	Router *providers.Router
	// Logger receives one line per request and operational events. Nil
	// discards.
	Logger *slog.Logger
	// Registry holds the metrics served on /metrics. Nil: a new registry
	// with Go and process collectors.
	Registry *prometheus.Registry
	// APIKeys, when non-empty, are required from clients.
	APIKeys []config.Secret
	// MaxBodyBytes caps request bodies. Zero: config.DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxBlobBytes caps one Ollama blob upload (POST /api/blobs/{digest}),
	// which is streamed to the backend rather than read first, so it is
	// not held by dso and MaxBodyBytes does not apply. Zero:
	// DefaultMaxBlobBytes.
	MaxBlobBytes int64
	// MaxInFlight and MaxBytesInFlight bound the requests, and the bytes
	// of their bodies, served at once (a body of unknown length counts as
	// MaxBodyBytes); beyond them requests get 503 with Retry-After. Zero:
	// config.DefaultMaxInFlight and config.DefaultMaxBytesInFlight.
	MaxInFlight      int
	MaxBytesInFlight int64
	// BodyTimeout bounds reading one request body, so that a client
	// trickling a body cannot hold a connection (and a descriptor) for
	// ever. Zero: config.DefaultBodyTimeout.
	BodyTimeout time.Duration
	// MinBodyRate is the slowest a request body may arrive, in bytes a
	// second over each BodyRateWindow (nginx's client_body_timeout, by
	// rate): a body slower than that gets 408 and its connection is
	// closed, long before BodyTimeout. Zero: config.DefaultMinBodyRate;
	// negative: no minimum. BodyRateWindow zero: DefaultBodyRateWindow.
	MinBodyRate    int
	BodyRateWindow time.Duration
	// MaxInFlightPerClient bounds the requests one client address has in
	// flight (503 beyond), so that one address cannot hold every slot of
	// MaxInFlight. Zero: a config.DefaultClientShare part of MaxInFlight;
	// negative: no bound.
	MaxInFlightPerClient int
	// MaxRetryWait caps one wait between retries, including a backend's
	// Retry-After. Zero: 5s.
	MaxRetryWait time.Duration
	// ReadyTimeout bounds each backend check of /readyz. Zero: 3s.
	ReadyTimeout time.Duration
	// ModelsTimeout bounds listing the backends' models (/v1/models,
	// /api/tags), asked all at once; a backend that has not answered by
	// then is left out. Zero: 10s.
	ModelsTimeout time.Duration
	// AdminKeys, when non-empty, are required for the experience API
	// instead of APIKeys.
	AdminKeys []config.Secret
	// TrustVoterHeader takes X-DSO-Voter from every client as the name of
	// a voter within the client's key (or address): a team behind one
	// shared key then counts as its members, as many voters as it names.
	// Set it only where the clients, or a gateway in front that sets the
	// header, are trusted not to invent voters. False: the header is
	// honoured only with an admin key, and one key is one voter.
	TrustVoterHeader bool
	// Retrieval configures experience retrieval and injection; a nil
	// Retrieval.Library disables it.
	Retrieval Retrieval
	// Learner records feedback (POST /v1/feedback, X-DSO-Feedback). Nil:
	// feedback is refused. Header feedback is recorded in the background,
	// after the request was forwarded; its trace ids are checked against
	// the traces Retrieval.Library stores (without one, none is known).
	Learner Grader
	// TraceQueue is how many finished traces may wait for the trace
	// writer, which stores what has gathered in batches of up to 512, one
	// transaction each. It bounds the memory traces take while the store
	// is behind. Zero: DefaultTraceQueue.
	TraceQueue int
	// TraceWait is how long a finished request waits for room in a full
	// trace queue before its trace is dropped (counted in
	// dso_traces_dropped_total; feedback for it is then refused as for an
	// unknown trace). The wait comes after the answer's bytes were sent
	// (see recordTrace): it slows a burst down to what the store can take
	// rather than lose traces. Zero: DefaultTraceWait; negative: no wait,
	// drop at once.
	TraceWait time.Duration
	// TraceGather is how long the trace writer lets a batch gather after
	// its first trace before storing it: one transaction and one sync to
	// disk per interval under a steady load, instead of one per request
	// (a trace is stored at most this much later; feedback waiting for a
	// trace has it stored at once). Zero: DefaultTraceGather; negative:
	// store what has queued as soon as the writer is free.
	TraceGather time.Duration
	// OpenLibrary lets requests without a key use the experience API
	// (reads and writes) and send feedback (POST /v1/feedback,
	// X-DSO-Feedback) when neither APIKeys nor AdminKeys are set. False,
	// the zero value: with no keys at all those requests get 403 saying
	// how to fix it, and header feedback is rejected, because anyone who
	// can reach dso could otherwise read other users' lessons or rewrite
	// what every user is told; chat and the other routes work as usual.
	// When keys are set they guard these routes either way. dso serve sets
	// it on loopback addresses and for config.Config.OpenLibrary.
	OpenLibrary bool
	// Network reports the experience network on GET /v1/network, guarded
	// like the experience API. Nil: the route answers 404.
	Network NetworkReporter
	// Responses keeps the Responses API responses dso translates (for
	// previous_response_id and GET /v1/responses/{id}). Nil: the
	// library's store when it can (SQLite, or Redis shared by replicas),
	// else memory, the newest DefaultMemoryResponses for at most
	// DefaultResponseMaxAge, lost on restart.
	Responses ResponseStore
	// AllowedHosts are the Host names dso answers besides IP addresses and
	// loopback names (localhost, *.localhost): a name, ".example.com" for
	// every name under it, or "*" for any. Other names get 403, so that a
	// page whose name was rebound to dso's address cannot use it (see
	// hosts.go). dso serve adds the name it listens on.
	AllowedHosts []string
	// TrustedProxies are the load balancers in front of dso: from them,
	// X-Forwarded-For names the client (see clientAddr), and their own
	// connections are not bounded per client (Listener). Nil: none.
	TrustedProxies []netip.Prefix

	now func() time.Time // the clock of rate-limited warnings; nil: time.Now (tests set it)
}

// Server is dso's HTTP surface.
type Server struct {
	opts    Options
	router  *providers.Router
	log     *slog.Logger
	reg     *prometheus.Registry
	metrics *metrics
	stats   *statsRing // the last hour, for the dashboard (GET /v1/stats)
	keys    *keyring
	admin   *keyring
	// clients are the keys the client routes take when client keys are
	// configured: those and the admin keys (an admin may do what a
	// client may); none when there are no client keys.
	clients *keyring
	handler http.Handler
	closed  bool // the library refuses requests: no keys, not OpenLibrary

	traceQ    *queue[store.Trace] // finished traces, for writeTraces; nil without a library
	spool     traceSpool          // traces the store could not take while away
	storeAway atomic.Bool         // the store refused the last trace write as unreachable
	pending   sync.Map            // trace id → chan struct{} closed once stored or given up
	feedbackQ *queue[feedbackJob] // header feedback, for recordFeedback; nil without a learner

	// traceNudge ends the writer's gathering early, and traceAwaited
	// counts the feedback waiting for a trace (the writer then does not
	// gather at all): feedback never waits for Options.TraceGather.
	traceNudge   chan struct{}
	traceAwaited atomic.Int32
	// tracesClosing is closed by Close: the writer stops gathering.
	tracesClosing chan struct{}

	// Repeated warnings, each at most once per warnInterval.
	traceDrops    *warnEvery // traces dropped: the queue stayed full
	traceFails    *warnEvery // trace batches the store failed to write
	feedbackFails *warnEvery // header feedback that could not be recorded
	responseFails *warnEvery // translated responses that could not be stored
	hostRefusals  *warnEvery // requests for a Host not allowed
	limitRefusals *warnEvery // requests refused by an in-flight bound
	connRefusals  *warnEvery // connections closed past a client's share

	responses ResponseStore
	turns     *turnMemory // the notes of conversations' earlier turns

	retrievalWarned atomic.Bool // a retrieval failure was logged at warn level
	flight          *inFlight
	hosts           hostAllowlist

	closeOnce sync.Once
}

// New builds a Server. It panics if opts.Router is nil: that is a wiring
// mistake, not a runtime condition.
func New(opts Options) *Server {
	if opts.Router == nil {
		panic("proxy: Options.Router is nil")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
		opts.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = config.DefaultMaxBodyBytes
	}
	if opts.MaxBlobBytes <= 0 {
		opts.MaxBlobBytes = DefaultMaxBlobBytes
	}
	if opts.BodyTimeout <= 0 {
		opts.BodyTimeout = config.DefaultBodyTimeout
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = config.DefaultMaxInFlight
	}
	if opts.MaxBytesInFlight <= 0 {
		opts.MaxBytesInFlight = config.DefaultMaxBytesInFlight
	}
	if opts.MaxInFlightPerClient == 0 {
		opts.MaxInFlightPerClient = max(1, opts.MaxInFlight/config.DefaultClientShare)
	}
	if opts.MinBodyRate == 0 {
		opts.MinBodyRate = config.DefaultMinBodyRate
	}
	if opts.BodyRateWindow <= 0 {
		opts.BodyRateWindow = DefaultBodyRateWindow
	}
	if opts.MaxRetryWait <= 0 {
		opts.MaxRetryWait = 5 * time.Second
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 3 * time.Second
	}
	if opts.ModelsTimeout <= 0 {
		opts.ModelsTimeout = 10 * time.Second
	}
	if opts.Retrieval.Budget <= 0 {
		opts.Retrieval.Budget = config.DefaultRetrievalBudget
	}
	if opts.Retrieval.TopK <= 0 {
		opts.Retrieval.TopK = config.DefaultTopK
	}
	if opts.Retrieval.NodeID == "" {
		opts.Retrieval.NodeID = config.DefaultNodeID
	}
	if opts.TraceQueue <= 0 {
		opts.TraceQueue = DefaultTraceQueue
	}
	if opts.TraceWait == 0 {
		opts.TraceWait = DefaultTraceWait
	}
	if opts.TraceGather == 0 {
		opts.TraceGather = DefaultTraceGather
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	s := &Server{
		opts:    opts,
		router:  opts.Router,
		log:     opts.Logger,
		reg:     opts.Registry,
		metrics: newMetrics(opts.Registry),
		stats:   newStatsRing(opts.now),
		keys:    newKeyring(opts.APIKeys),
		admin:   newKeyring(opts.AdminKeys),
		closed:  !opts.OpenLibrary && len(opts.APIKeys) == 0 && len(opts.AdminKeys) == 0,
		flight: &inFlight{maxRequests: opts.MaxInFlight, maxBytes: opts.MaxBytesInFlight, maxBody: opts.MaxBodyBytes,
			maxPerClient: opts.MaxInFlightPerClient},

		traceDrops:    newWarnEvery(opts.Logger, opts.now, warnInterval, "trace queue full; traces dropped (feedback for them will be refused)"),
		traceFails:    newWarnEvery(opts.Logger, opts.now, warnInterval, "storing traces failed; traces lost"),
		feedbackFails: newWarnEvery(opts.Logger, opts.now, warnInterval, "recording header feedback failed"),
		responseFails: newWarnEvery(opts.Logger, opts.now, warnInterval, "storing a Responses API response failed; previous_response_id cannot continue from it"),
		hostRefusals: newWarnEvery(opts.Logger, opts.now, warnInterval,
			"refused requests for a host name that is not allowed (a DNS rebinding page, or a name to add to allowed_hosts)"),
		limitRefusals: newWarnEvery(opts.Logger, opts.now, warnInterval, "refused requests past a bound (503)"),
		connRefusals:  newWarnEvery(opts.Logger, opts.now, warnInterval, "closed client connections past a client's share"),
		hosts:         newHostAllowlist(opts.AllowedHosts),
	}
	s.clients = &keyring{}
	if len(s.keys.digests) > 0 {
		s.clients.digests = append(slices.Clone(s.keys.digests), s.admin.digests...)
	}
	var shared sharedTurns
	if lib := opts.Retrieval.Library; lib != nil {
		shared, _ = lib.Store().(sharedTurns)
	}
	s.turns = newTurnMemory(maxRememberedTurns, shared,
		newWarnEvery(opts.Logger, opts.now, warnInterval, "sharing conversation notes through the store failed; another replica will not put them back"))
	s.responses = opts.Responses
	if s.responses == nil {
		if lib := opts.Retrieval.Library; lib != nil {
			s.responses, _ = lib.Store().(ResponseStore)
		}
	}
	if s.responses == nil {
		s.responses = newMemResponses(DefaultMemoryResponses, DefaultResponseMaxAge, opts.now)
	}
	if opts.Learner != nil {
		s.feedbackQ = newQueue(feedbackQueueLen, s.recordFeedback)
	}
	if lib := opts.Retrieval.Library; lib != nil {
		storeOf(lib) // a store that cannot keep traces is a wiring mistake
		s.traceNudge = make(chan struct{}, 1)
		s.tracesClosing = make(chan struct{})
		s.traceQ = newQueue(opts.TraceQueue, s.writeTraces)
		opts.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "dso_traces_queue_depth", Help: "Finished traces waiting to be stored.",
		}, func() float64 { return float64(s.traceQ.len()) }))
		opts.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "dso_library_experiences", Help: "Experiences in the search index.",
		}, func() float64 { return float64(lib.Len()) }))
		opts.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "dso_library_space_ready", Help: "1 when the library's embedding space can embed (else chats go through uninjected).",
		}, func() float64 {
			if lib.Ready() != nil {
				return 0
			}
			return 1
		}))
		opts.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "dso_library_reembed_pending", Help: "Stored experiences not yet embedded in the library's space.",
		}, func() float64 { return float64(lib.Stale()) }))
		opts.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "dso_library_gate_relevance", Help: "The calibrated relevance an experience needs to be injected.",
		}, func() float64 {
			g, _ := lib.Gate()
			return float64(g.Value)
		}))
	}
	s.handler = s.routes()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// routes is the one route table.
func (s *Server) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(s.observe, s.checkHost)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, routeSurface(r), &HTTPError{Status: http.StatusNotFound, Type: "invalid_request_error", Msg: fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path)})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, routeSurface(r), &HTTPError{Status: http.StatusMethodNotAllowed, Type: "invalid_request_error", Msg: fmt.Sprintf("method %s is not allowed on %s", r.Method, r.URL.Path)})
	})

	r.Get("/healthz", s.healthz)
	r.Get("/readyz", s.readyz)

	r.Group(func(r chi.Router) {
		r.Use(s.auth)
		r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))

		// OpenAI surface, with and without the /v1 prefix.
		for _, p := range []string{"/v1", ""} {
			r.With(s.limit).Post(p+"/chat/completions", s.openAIChat)
			r.Get(p+"/models", s.openAIModels)
			r.With(s.limit).Post(p+"/embeddings", s.openAIEmbeddings)
			r.With(s.limit).Post(p+"/responses", s.createResponse)
			r.Get(p+"/responses/{id}", s.getResponse)
			r.Delete(p+"/responses/{id}", s.deleteResponse)
			r.Get(p+"/responses/{id}/input_items", s.listInputItems)
			r.With(s.limit).Post(p+"/completions", s.completions)
		}

		// Anthropic surface (its clients always use the /v1 prefix).
		r.With(s.limit).Post("/v1/messages", s.anthropicMessages)
		r.With(s.limit).Post("/v1/messages/count_tokens", s.anthropicCountTokens)

		// Ollama surface.
		r.Get("/", s.ollamaRoot)
		r.Head("/", s.ollamaRoot)
		r.With(s.limit).Post("/api/chat", s.ollamaChat)
		r.With(s.limit).Post("/api/generate", s.ollamaGenerate)
		r.With(s.limit).Post("/api/embed", s.ollamaEmbed)
		r.Get("/api/tags", s.ollamaTags)
		r.Get("/api/version", s.ollamaVersion)
		r.Get("/api/ps", s.ollamaPS)
		r.With(s.limit).Post("/api/show", s.ollamaShow)
		r.With(s.limit).Post("/api/pull", s.ollamaPull)
		r.With(s.limit).Post("/api/embeddings", s.ollamaEmbeddings)
		r.With(s.limit).Post("/api/copy", s.ollamaManage("api/copy", "source"))
		r.With(s.limit).Delete("/api/delete", s.ollamaManage("api/delete", "model", "name"))
		r.With(s.limit).Post("/api/create", s.ollamaManage("api/create", "model", "name"))
		r.With(s.limit).Post("/api/push", s.ollamaManage("api/push", "model", "name"))
		r.Head("/api/blobs/{digest}", s.ollamaBlob)
		r.With(s.limit).Post("/api/blobs/{digest}", s.ollamaBlob) // streamed: see ollamaBlob
	})

	// Feedback: a client key, or an admin key (the dashboard grades with
	// one), when client keys are configured; none when there are none.
	r.With(s.auth, s.guardLibrary, s.sameOrigin).Post("/v1/feedback", s.postFeedback)

	// Experience API: admin keys when configured, else the client keys,
	// else closed unless Options.OpenLibrary.
	r.Group(func(r chi.Router) {
		if len(s.admin.digests) > 0 {
			r.Use(s.requireKey(s.admin))
		} else {
			r.Use(s.auth, s.guardLibrary)
		}
		r.Use(s.sameOrigin)
		r.Post("/v1/experiences", s.createExperience)
		r.Get("/v1/experiences", s.listExperiences)
		r.Get("/v1/experiences/search", s.searchExperiences)
		r.Get("/v1/experiences/{id}", s.getExperience)
		r.Patch("/v1/experiences/{id}", s.patchExperience)
		r.Delete("/v1/experiences/{id}", s.deleteExperience)
		// What the dashboard reads besides the library: traces hold
		// users' questions and answers, so they are guarded like it.
		r.Get("/v1/traces", s.listTraces)
		r.Get("/v1/stats", s.getStats)
		r.Get("/v1/network", s.getNetwork)
	})

	// The dashboard's pages hold no data (their scripts call the API
	// above), so they are served without a key.
	r.Handle(ui.Prefix+"*", ui.Handler())
	r.Get(strings.TrimSuffix(ui.Prefix, "/"), func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, ui.Prefix, http.StatusMovedPermanently)
	})
	return r
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok\n")
}

// readyz checks every backend concurrently.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	bs := s.router.Backends()
	type result struct {
		name string
		err  error
	}
	ch := make(chan result, len(bs))
	for _, b := range bs {
		go func() {
			ctx, cancel := context.WithTimeout(r.Context(), s.opts.ReadyTimeout)
			defer cancel()
			ch <- result{b.Name(), b.Ping(ctx)}
		}()
	}
	status := map[string]string{}
	ready := true
	for range bs {
		res := <-ch
		if res.err != nil {
			ready = false
			status[res.name] = "unreachable"
			s.log.WarnContext(r.Context(), "backend not ready", logKeyBackend, res.name, logKeyErr, res.err.Error())
		} else {
			status[res.name] = "ok"
		}
	}
	code := http.StatusOK
	if !ready {
		code = http.StatusServiceUnavailable
	}
	out := map[string]any{"ready": ready, "backends": status}
	if lib := s.opts.Retrieval.Library; lib != nil {
		out["retrieval"] = retrievalStatus(lib)
		if sh := storeHealth(r.Context(), lib, s.opts.ReadyTimeout); sh != nil {
			out["store"] = sh
			s.storeAway.Store(sh["state"] != "ok")
		}
	}
	writeJSON(w, code, out)
}

// retrievalStatus is retrieval's part of /readyz. Retrieval never holds
// chat back (a request it cannot serve goes through uninjected), so it
// does not decide readiness; it says what injection can do now and why not.
func retrievalStatus(lib *library.Library) map[string]any {
	st := map[string]any{
		"space":       lib.Space().Name,
		"experiences": lib.Len(),
		"to_reembed":  lib.Stale(),
	}
	if m := lib.Moving(); m != "" {
		st["moving_to"] = m
	}
	if err := lib.Ready(); err != nil {
		st["state"] = reasonNotReady
		st["reason"] = err.Error()
		return st
	}
	st["state"] = "ready"
	if lib.Len() == 0 {
		st["state"] = reasonIndexEmpty
	}
	if g, ok := lib.Gate(); ok {
		st["gate"] = g
	}
	if err := lib.FollowErr(); err != nil {
		st["follow_error"] = err.Error()
	}
	return st
}
