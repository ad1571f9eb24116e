package config

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
)

// Backend types.
const (
	TypeOpenAI    = "openai"    // any OpenAI-compatible server
	TypeOllama    = "ollama"    // Ollama's native API
	TypeAnthropic = "anthropic" // Anthropic's Messages API
)

// DefaultAnthropicURL is an anthropic backend's URL when none is set.
const DefaultAnthropicURL = "https://api.anthropic.com"

// Defaults, named so that docs and code agree.
const (
	DefaultListen         = "127.0.0.1:8080"
	DefaultBackend        = "ollama:http://127.0.0.1:11434"
	DefaultData           = "./dso-data"
	DefaultMaxBodyBytes   = 32 << 20
	DefaultBodyTimeout    = time.Minute
	DefaultMaxConnections = 4096
	DefaultMaxInFlight    = 1024
	// DefaultMinBodyRate is the slowest a request body may arrive, in
	// bytes a second averaged over BodyRateWindow: a client on the
	// slowest mobile link sends faster; one trickling a byte a second to
	// hold a connection and a request slot is cut off.
	DefaultMinBodyRate = 1024
	// DefaultClientShare is the share of MaxConnections and of MaxInFlight
	// one client address may hold, so that one address cannot take them all.
	DefaultClientShare = 4
	// DefaultMaxBytesInFlight bounds the request bodies held at once;
	// each is copied a few times on its way (parsing, injection).
	DefaultMaxBytesInFlight = 256 << 20
	DefaultBackendTimeout   = 5 * time.Minute
	DefaultRetries          = 2
	DefaultRetryBackoff     = 200 * time.Millisecond
	DefaultShutdownTimeout  = 30 * time.Second
	DefaultRetrievalBudget  = 250 * time.Millisecond
	DefaultTopK             = 5
	// DefaultMinConfidence is the confidence floor below which an
	// experience is not injected: a lesson at the default prior (0.6) falls
	// below it once three voters in a row reject it, before the five needed
	// to retire it.
	DefaultMinConfidence = 0.3
	DefaultNodeID        = "local"
)

// Config is everything `dso serve` needs. The zero value of each field means
// the default documented beside it; Default returns a Config with defaults
// filled in.
type Config struct {
	// Listen is the address the proxy serves on. Default DefaultListen.
	Listen string `yaml:"listen"`
	// Data is the directory holding the embedded store. Default DefaultData.
	Data string `yaml:"data"`
	// Redis, when set, is the URL (redis://[user:password@]host:port/db) of
	// the Redis server that holds the library instead of the SQLite file
	// under Data, shared by every replica that names it. Empty: SQLite.
	Redis Secret `yaml:"redis"`
	// Backends are tried in order: a request goes to the first backend whose
	// Models patterns match its model. Default: one Ollama backend on
	// localhost serving every model.
	Backends []Backend `yaml:"backends"`
	// APIKeys, when non-empty, are the keys clients must present as
	// "Authorization: Bearer KEY" (or "X-API-Key"). Empty: no client auth.
	APIKeys []Secret `yaml:"api_keys"`
	// MaxBodyBytes caps request bodies. Default DefaultMaxBodyBytes.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// BodyTimeout bounds reading one request body (408 past it). Default
	// DefaultBodyTimeout.
	BodyTimeout time.Duration `yaml:"body_timeout"`
	// MaxConnections bounds open client connections; more wait to be
	// accepted. Default DefaultMaxConnections; negative means no limit.
	MaxConnections int `yaml:"max_connections"`
	// MaxInFlight and MaxBytesInFlight bound the requests and request body
	// bytes served at once (503 with Retry-After beyond). Defaults
	// DefaultMaxInFlight and DefaultMaxBytesInFlight.
	MaxInFlight      int   `yaml:"max_in_flight"`
	MaxBytesInFlight int64 `yaml:"max_bytes_in_flight"`
	// MemoryLimit is the Go runtime's memory limit
	// (runtime/debug.SetMemoryLimit): the heap size past which the garbage
	// collector runs however little garbage there is, so that dso's
	// resident memory stays near what it holds. It is a target, not a cap:
	// past it dso slows down rather than fails. 0 (the default) derives it
	// from what dso holds, mostly the library's index: DefaultMemoryLimit
	// of the live heap (or of the index's bytes, when more), followed as
	// the library grows (with GOMEMLIMIT set, that is kept instead; with
	// retrieval disabled, none is set). Off (-1): no limit, the heap may
	// grow to twice what is live (GOGC). DSO_MEMORY_LIMIT.
	MemoryLimit ByteSize `yaml:"memory_limit"`
	// MaxConnectionsPerClient and MaxInFlightPerClient bound what one
	// client address may hold of those: its connections past the bound are
	// closed at once, its requests get 503. Defaults: a DefaultClientShare
	// part of MaxConnections and MaxInFlight; negative: no per-client bound
	// (behind a load balancer every client is one address: see README).
	MaxConnectionsPerClient int `yaml:"max_connections_per_client"`
	MaxInFlightPerClient    int `yaml:"max_in_flight_per_client"`
	// MinBodyRate is the slowest a request body may arrive, in bytes a
	// second; slower bodies get 408 and their connection is closed.
	// Default DefaultMinBodyRate; negative: no minimum (BodyTimeout still
	// bounds the whole body).
	MinBodyRate int `yaml:"min_body_rate"`
	// AllowedHosts are the Host names dso answers besides IP addresses and
	// loopback names (localhost, *.localhost) and the name it listens on:
	// a name, ".example.com" for all names under it, or "*" for any.
	// Requests for other names get 403, so that a web page whose name was
	// rebound to dso's address cannot read or write through it.
	AllowedHosts []string `yaml:"allowed_hosts"`
	// TrustedProxies are the addresses (an IP or a CIDR prefix) of the
	// load balancers in front of dso, as Caddy's and nginx's
	// trusted_proxies: from them, X-Forwarded-For names the client (its
	// rightmost address that is not a trusted proxy), which is then the
	// unit of the per-client bounds and the voter of keyless feedback;
	// their own connections are not bounded per client. From anyone else
	// X-Forwarded-For is ignored. Default: none.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// ShutdownTimeout is how long a graceful stop waits for streams to
	// finish. Default DefaultShutdownTimeout.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `yaml:"log_level"`
	// AdminKeys, when non-empty, are required for the experience API.
	// Empty: the experience API takes the client keys (if any).
	AdminKeys []Secret `yaml:"admin_keys"`
	// OpenLibrary opens the experience library (the experience API, reads
	// and writes) and feedback to anyone who can reach dso, when dso
	// listens beyond loopback with neither api_keys nor admin_keys. Default
	// false: there, those requests are refused (403) until keys are set;
	// chat works either way. On a loopback address they are always open.
	OpenLibrary bool `yaml:"open_library"`
	// TrustVoterHeader takes the X-DSO-Voter header from every client as
	// a voter's name within the client's key, so that a team sharing one
	// key votes as its members. Default false: one key is one voter (the
	// header is honoured only with an admin key). DSO_TRUST_VOTER_HEADER
	// overrides it.
	TrustVoterHeader bool `yaml:"trust_voter_header"`
	// NodeID names this node in the experiences it creates. Default "local".
	NodeID string `yaml:"node_id"`
	// Retrieval configures experience retrieval and injection.
	Retrieval Retrieval `yaml:"retrieval"`
	// Network configures the experience network; zero: none.
	Network Network `yaml:"network"`
	// Networks configures several networks, each with its own log, peers
	// and shared domains; instead of Network, not beside it.
	Networks []Network `yaml:"networks"`
}

// Retrieval configures how experiences are found and injected.
type Retrieval struct {
	// Disabled turns retrieval and injection off for every request.
	Disabled bool `yaml:"disabled"`
	// Index is the search index backend: cpu, gpu or auto (the GPU when
	// one is usable, else the CPU). Default cpu.
	Index string `yaml:"index"`
	// Embedder names the library's one embedding space: every experience
	// and every question is embedded with it, whatever backend answers.
	// "hash[:DIM]" (hashed words and word pieces, built in: no model, no
	// network call, the same on every node), "wordvec:FILE" (a local
	// GloVe/word2vec text file), "model:NAME" (embedding model NAME on the
	// backend that serves it) or "backend" (model: EmbeddingModel).
	// Default: "backend" when EmbeddingModel or a backend's
	// embedding_model is set, else "hash".
	Embedder string `yaml:"embedder"`
	// EmbeddingModel is the embedding model of "backend". Default: the
	// first backend's embedding_model.
	EmbeddingModel string `yaml:"embedding_model"`
	// MinScore is the relevance an experience needs to be injected (its
	// score less the question's background). Nil: the gate calibrated on
	// the library itself.
	MinScore *float64 `yaml:"min_score"`
	// Budget bounds the whole retrieval of one request; past it the request
	// goes on without injection. Default DefaultRetrievalBudget.
	Budget time.Duration `yaml:"budget"`
	// TopK is how many experiences are injected at most. Default 5.
	TopK int `yaml:"top_k"`
	// MinConfidence drops experiences below it: they are not injected.
	// Default DefaultMinConfidence; a negative value means no floor.
	MinConfidence float64 `yaml:"min_confidence"`
	// InjectWhole injects a domain of at most this many experiences whole
	// (every one that clears the relevance gate, within max_tokens)
	// instead of the best top_k: a small library of merged rules is best
	// shown entire. Default 0: off.
	InjectWhole int `yaml:"inject_whole"`
	// MaxTokens bounds the injected message. Default 1024.
	MaxTokens int `yaml:"max_tokens"`
	// InjectPosition is where the notes go: PositionUser (the default)
	// with the newest user turn, so that a backend's prompt cache of the
	// conversation before it still holds; PositionSystem in the system
	// message, as dso did before (every turn's prompt then differs right
	// after the system text).
	InjectPosition string `yaml:"inject_position"`
	// Seed is the canonical lift's seed, the same on every node of a
	// network. 0: the built-in seed.
	Seed uint64 `yaml:"seed"`
	// Adapters map an embedding model name to an adapter file made by
	// `dso align fit`.
	Adapters map[string]string `yaml:"adapters"`
	// CacheSize is how many query embeddings are cached. Default 4096.
	CacheSize int `yaml:"cache_size"`
	// Models override injection settings by model name: the first rule
	// whose pattern (path.Match glob) matches the request's model applies,
	// on top of its backend's settings.
	Models []ModelInjection `yaml:"models"`
	// MaxTraces and TraceMaxAge bound the stored traces. Defaults: the
	// store's (100,000 and 30 days).
	MaxTraces   int           `yaml:"max_traces"`
	TraceMaxAge time.Duration `yaml:"trace_max_age"`
}

// ModelInjection overrides injection settings for models matching Pattern.
type ModelInjection struct {
	Pattern   string `yaml:"pattern"`
	Injection `yaml:",inline"`
}

// Injection are per-backend overrides of the retrieval settings.
type Injection struct {
	// Off disables injection for requests to this backend.
	Off bool `yaml:"off"`
	// TopK, MinConfidence, MinScore and Domain override the global
	// settings and act as defaults for the request headers. Zero values
	// (nil MinScore) inherit.
	TopK          int      `yaml:"top_k"`
	MinConfidence float64  `yaml:"min_confidence"`
	MinScore      *float64 `yaml:"min_score"`
	Domain        string   `yaml:"domain"`
	// Position overrides Retrieval.InjectPosition.
	Position string `yaml:"position"`
}

// Backend is one LLM server dso can forward to.
type Backend struct {
	// Name identifies the backend in fallbacks, logs and metrics.
	Name string `yaml:"name"`
	// Type is TypeOpenAI, TypeOllama or TypeAnthropic.
	Type string `yaml:"type"`
	// URL is the server's base URL. For OpenAI-compatible servers it
	// includes the version path, e.g. https://api.openai.com/v1; a URL with
	// an empty path gets /v1 appended. For Anthropic it is the base
	// without /v1, as ANTHROPIC_BASE_URL; empty: DefaultAnthropicURL.
	URL string `yaml:"url"`
	// APIKey is sent as the backend's bearer token, replacing the client's
	// (as x-api-key for an anthropic backend).
	APIKey Secret `yaml:"api_key"`
	// APIKeyEnv names an environment variable holding the API key; it is
	// read at load time and wins over APIKey.
	APIKeyEnv string `yaml:"api_key_env"`
	// Models are glob patterns (path.Match syntax) of model names this
	// backend serves. Empty: every model.
	Models []string `yaml:"models"`
	// EmbeddingModel is the model used to embed queries for retrieval.
	// Empty: the chat model itself.
	EmbeddingModel string `yaml:"embedding_model"`
	// Timeout bounds the wait for the backend's response headers and for
	// each read of its body after that. Default DefaultBackendTimeout.
	Timeout time.Duration `yaml:"timeout"`
	// Retries is how many more times a failure before the first byte is
	// tried on this backend before moving to its fallbacks. Default
	// DefaultRetries; negative means none.
	Retries int `yaml:"retries"`
	// RetryBackoff is the first wait between retries; it doubles each time.
	// Default DefaultRetryBackoff.
	RetryBackoff time.Duration `yaml:"retry_backoff"`
	// Fallbacks name other backends tried, in order, when this one fails
	// before the first byte.
	Fallbacks []string `yaml:"fallbacks"`
	// Injection overrides retrieval settings for this backend.
	Injection Injection `yaml:"injection"`
	// ContextTokens is the models' context length, in tokens. Where it is
	// set, the notes take at most what a request (counted whole, as an
	// overestimate) and the answer it asks room for leave of it: near the
	// limit, fewer notes or none, never a cut client message. An Ollama
	// request's options.num_ctx wins. 0: unknown, not checked.
	ContextTokens int `yaml:"context_tokens"`
	// Responses says how the Responses API (/v1/responses) reaches this
	// backend: ResponsesNative relays it to the backend's own /responses
	// (which then keeps the responses), ResponsesTranslate translates it
	// to chat completions (dso keeps them). Empty: native for OpenAI's
	// own API (api.openai.com), translate for every other server.
	Responses string `yaml:"responses"`
}

// Values of Retrieval.InjectPosition and Injection.Position.
const (
	PositionUser   = "user"
	PositionSystem = "system"
)

// Values of Backend.Responses.
const (
	ResponsesNative    = "native"
	ResponsesTranslate = "translate"
)

// NativeResponses reports whether the Responses API is relayed to the
// backend's own /responses (see Backend.Responses).
func (b Backend) NativeResponses() bool {
	switch b.Responses {
	case ResponsesNative:
		return true
	case ResponsesTranslate:
		return false
	}
	u, err := url.Parse(b.URL)
	return err == nil && b.Type == TypeOpenAI && strings.EqualFold(u.Hostname(), "api.openai.com")
}

// Secret is a string that never prints: logs and errors see "REDACTED".
type Secret string

// String implements fmt.Stringer.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "REDACTED"
}

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// GoString implements fmt.GoStringer, for %#v.
func (s Secret) GoString() string { return strconvQuote(s.String()) }

// MarshalJSON redacts the secret wherever encoding/json meets it (slog's
// JSON handler included).
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(strconvQuote(s.String())), nil }

func strconvQuote(s string) string { return fmt.Sprintf("%q", s) }

// Reveal returns the secret itself, for the one place that sends it.
func (s Secret) Reveal() string { return string(s) }

// Default returns a Config with every default filled in.
func Default() Config {
	c := Config{}
	c.fill()
	return c
}

// LibraryEmbedder returns the library's embedding space spec with
// "backend" resolved: "hash:DIM", "wordvec:FILE" or "model:NAME".
func (r Retrieval) LibraryEmbedder() string {
	switch e := r.Embedder; {
	case e == "" || e == "hash":
		return "hash:" + DefaultHashDim
	case e == "backend":
		return "model:" + r.EmbeddingModel
	default:
		return e
	}
}

// DefaultHashDim is the width of the built-in hash embedder.
const DefaultHashDim = "2048"

// fill sets defaults in zero fields.
func (c *Config) fill() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.Data == "" {
		c.Data = DefaultData
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.BodyTimeout == 0 {
		c.BodyTimeout = DefaultBodyTimeout
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.MaxBytesInFlight == 0 {
		c.MaxBytesInFlight = DefaultMaxBytesInFlight
	}
	if c.MaxConnectionsPerClient == 0 && c.MaxConnections > 0 {
		c.MaxConnectionsPerClient = max(1, c.MaxConnections/DefaultClientShare)
	}
	if c.MaxInFlightPerClient == 0 {
		c.MaxInFlightPerClient = max(1, c.MaxInFlight/DefaultClientShare)
	}
	if c.MinBodyRate == 0 {
		c.MinBodyRate = DefaultMinBodyRate
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.NodeID == "" {
		c.NodeID = DefaultNodeID
	}
	if c.Retrieval.EmbeddingModel == "" {
		for _, b := range c.Backends {
			if b.EmbeddingModel != "" {
				c.Retrieval.EmbeddingModel = b.EmbeddingModel
				break
			}
		}
	}
	if c.Retrieval.Embedder == "" {
		c.Retrieval.Embedder = "hash"
		if c.Retrieval.EmbeddingModel != "" {
			c.Retrieval.Embedder = "backend"
		}
	}
	if c.Retrieval.Index == "" {
		c.Retrieval.Index = "cpu"
	}
	if c.Retrieval.Budget == 0 {
		c.Retrieval.Budget = DefaultRetrievalBudget
	}
	if c.Retrieval.TopK == 0 {
		c.Retrieval.TopK = DefaultTopK
	}
	if c.Retrieval.MinConfidence == 0 {
		c.Retrieval.MinConfidence = DefaultMinConfidence
	}
	if len(c.Backends) == 0 {
		b, _ := ParseBackendSpec(DefaultBackend)
		c.Backends = []Backend{b}
	}
	for i := range c.Backends {
		b := &c.Backends[i]
		if b.Name == "" {
			b.Name = b.Type
			if i > 0 {
				b.Name = fmt.Sprintf("%s-%d", b.Type, i+1)
			}
		}
		if b.URL == "" && b.Type == TypeAnthropic {
			b.URL = DefaultAnthropicURL
		}
		if b.Timeout == 0 {
			b.Timeout = DefaultBackendTimeout
		}
		if b.Retries == 0 {
			b.Retries = DefaultRetries
		}
		if b.RetryBackoff == 0 {
			b.RetryBackoff = DefaultRetryBackoff
		}
	}
}

// ParseBackendSpec parses the TYPE:URL form used by --backend and
// DSO_BACKENDS, e.g. "openai:https://api.openai.com/v1". An anthropic
// backend may leave the URL out ("anthropic" or "anthropic:"): it is
// DefaultAnthropicURL.
func ParseBackendSpec(spec string) (Backend, error) {
	typ, rawURL, ok := strings.Cut(strings.TrimSpace(spec), ":")
	if typ == TypeAnthropic && rawURL == "" {
		rawURL, ok = DefaultAnthropicURL, true
	}
	if !ok || rawURL == "" {
		return Backend{}, fmt.Errorf("backend %q: want TYPE:URL, e.g. ollama:http://127.0.0.1:11434", spec)
	}
	b := Backend{Type: typ, URL: rawURL}
	if err := b.validate(); err != nil {
		return Backend{}, fmt.Errorf("backend %q: %w", spec, err)
	}
	return b, nil
}
