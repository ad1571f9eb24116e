package config

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// want is one expected problem: its line and words its message contains.
type want struct {
	line int
	path string // "" when the problem has no field path (a decoding error)
	msg  string
}

var checkTests = []struct {
	name string
	yaml string
	want []want
}{
	{name: "empty file", yaml: ``},
	{
		name: "positions and responses modes",
		yaml: `retrieval:
  inject_position: user
  models:
    - {pattern: "gpt*", position: system}
    - {pattern: "x*", position: last}
backends:
  - type: openai
    url: http://127.0.0.1:1/v1
    responses: native
    injection: {position: system}
  - type: ollama
    url: http://127.0.0.1:2
    responses: native
  - type: openai
    url: http://127.0.0.1:3/v1
    responses: relay
`,
		want: []want{
			{5, "retrieval.models[1].position", `"last" is not user or system`},
			{13, "backends[1].responses", "native needs an openai backend"},
			{16, "backends[2].responses", `"relay" is not native or translate`},
		},
	},
	{name: "comment only", yaml: "# nothing\n"},
	{
		name: "good",
		yaml: `listen: 0.0.0.0:8080
data: /var/lib/dso
max_body_bytes: 1048576
shutdown_timeout: 10s
log_level: debug
api_keys: [k1, k2]
backends:
  - name: local
    type: ollama
    url: http://127.0.0.1:11434
    models: ["llama*", "qwen?:*", "[a-z]*"]
    timeout: 2m
    retries: -1
    retry_backoff: 50ms
    fallbacks: [cloud]
  - name: cloud
    type: openai
    url: https://api.openai.com/v1
    api_key: sk-x
`,
	},
	{
		name: "unknown top-level field",
		yaml: "listen: :8080\nlisten_addr: :9090\n",
		want: []want{{line: 2, msg: "unknown field listen_addr"}},
	},
	{
		name: "unknown backend field",
		yaml: "backends:\n  - type: ollama\n    url: http://h\n    colour: red\n",
		want: []want{{line: 4, path: "backends[0]", msg: "unknown field colour"}},
	},
	{
		name: "bad durations",
		yaml: "shutdown_timeout: soon\nbackends:\n  - type: ollama\n    url: http://h\n    timeout: 5 parsecs\n    retry_backoff: -1s\n",
		want: []want{
			{line: 1, path: "shutdown_timeout", msg: `"soon" is not a duration (use a form like 250ms, 2s, 1m)`},
			{line: 5, path: "backends[0].timeout", msg: `"5 parsecs" is not a duration`},
			{line: 6, path: "backends[0].retry_backoff", msg: "negative"},
		},
	},
	{
		name: "negative durations",
		yaml: "shutdown_timeout: -1s\nbackends:\n  - type: ollama\n    url: http://h\n    timeout: -5m\n",
		want: []want{
			{line: 1, path: "shutdown_timeout", msg: "negative"},
			{line: 5, path: "backends[0].timeout", msg: "negative"},
		},
	},
	{
		name: "duplicate names",
		yaml: "backends:\n  - name: a\n    type: ollama\n    url: http://h1\n  - name: a\n    type: openai\n    url: http://h2/v1\n",
		want: []want{{line: 5, path: "backends[1].name", msg: `"a" is also the name of backends[0]`}},
	},
	{
		name: "unknown and self fallbacks",
		yaml: "backends:\n  - name: a\n    type: ollama\n    url: http://h\n    fallbacks:\n      - b\n      - zzz\n      - a\n  - name: b\n    type: ollama\n    url: http://h2\n",
		want: []want{
			{line: 7, path: "backends[0].fallbacks[1]", msg: `no backend is named "zzz"`},
			{line: 8, path: "backends[0].fallbacks[2]", msg: "itself"},
		},
	},
	{
		name: "globs",
		yaml: "backends:\n  - type: ollama\n    url: http://h\n    models:\n      - ok*\n      - \"[a\"\n      - \"\"\n",
		want: []want{
			{line: 6, path: "backends[0].models[1]", msg: "not a valid glob"},
			{line: 7, path: "backends[0].models[2]", msg: "not a valid glob"},
		},
	},
	{
		name: "types and urls",
		yaml: "backends:\n  - type: vllm\n    url: http://h\n  - type: openai\n    url: ftp://h\n  - url: http://h\n  - type: ollama\n  - type: anthropic\n",
		want: []want{
			{line: 2, path: "backends[0].type", msg: `"vllm" is not openai, ollama or anthropic`},
			{line: 5, path: "backends[1].url", msg: "not an http(s) URL"},
			{line: 6, path: "backends[2].type", msg: "must be openai, ollama or anthropic"},
			{line: 7, path: "backends[3].url", msg: "must not be empty"},
		},
	},
	{
		name: "log level, body limit and empty key",
		yaml: "log_level: loud\nmax_body_bytes: -1\napi_keys: [k, \" \"]\n",
		want: []want{
			{line: 1, path: "log_level", msg: `"loud"`},
			{line: 2, path: "max_body_bytes", msg: "negative"},
			{line: 3, path: "api_keys[1]", msg: "must not be empty"},
		},
	},
	{
		name: "wrong type keeps checking the rest",
		yaml: "listen: [1, 2]\nlog_level: loud\n",
		want: []want{
			{line: 1, path: "listen", msg: "must be a single value, not a list"},
			{line: 2, path: "log_level", msg: `"loud"`},
		},
	},
	{
		name: "not a mapping",
		yaml: "- a\n- b\n",
		want: []want{{line: 1, msg: "the file must be a mapping of settings"}},
	},
	// Issue 26: unknown keys are named with the nearest known key at their
	// level, and values that do not fit with their field and the form
	// expected, never in Go's terms.
	{
		name: "typo of a top-level key",
		yaml: "listen: :8080\nretreival:\n  top_k: 3\n",
		want: []want{{line: 2, msg: "unknown field retreival; did you mean retrieval?"}},
	},
	{
		name: "typos at deeper levels",
		yaml: "retrieval:\n  topk: 3\n  models:\n    - {pattern: a, domian: code}\nbackends:\n  - type: ollama\n    url: http://h\n    timout: 1s\n    injection: {Top_K: 2}\n",
		want: []want{
			{line: 2, path: "retrieval", msg: "unknown field topk; did you mean top_k?"},
			{line: 4, path: "retrieval.models[0]", msg: "unknown field domian; did you mean domain?"},
			{line: 8, path: "backends[0]", msg: "unknown field timout; did you mean timeout?"},
			{line: 9, path: "backends[0].injection", msg: "unknown field Top_K; did you mean top_k?"},
		},
	},
	{
		name: "no suggestion when nothing is near",
		yaml: "zebra: 1\n",
		want: []want{{line: 1, msg: "unknown field zebra"}},
	},
	{
		name: "values of the wrong kind",
		yaml: "retrieval:\n  budget: fast\n  top_k: many\n  seed: -1\n  min_score: high\n  disabled: maybe\n  cache_size: [1]\nnetwork: on\n",
		want: []want{
			{line: 2, path: "retrieval.budget", msg: `"fast" is not a duration (use a form like 250ms, 2s, 1m)`},
			{line: 3, path: "retrieval.top_k", msg: `"many" is not a whole number`},
			{line: 4, path: "retrieval.seed", msg: `"-1" is not a whole number, 0 or more`},
			{line: 5, path: "retrieval.min_score", msg: `"high" is not a number`},
			{line: 6, path: "retrieval.disabled", msg: `"maybe" is not true or false`},
			{line: 7, path: "retrieval.cache_size", msg: "must be a single value, not a list"},
			{line: 8, path: "network", msg: `must be a mapping of settings (key: value), not "on"`},
		},
	},
	{
		name: "a key given twice keeps yaml's words",
		yaml: "log_level: info\nlog_level: debug\n",
		want: []want{{line: 2, msg: `mapping key "log_level" already defined at line 1`}},
	},
	{
		name: "listen addresses",
		yaml: "listen: 127.0.0.1:99999\n",
		want: []want{{line: 1, path: "listen", msg: `port "99999" is not a number from 0 to 65535`}},
	},
	{
		name: "listen without a port",
		yaml: "listen: localhost\n",
		want: []want{{line: 1, path: "listen", msg: "is not host:port"}},
	},
}

// An anthropic backend without a URL gets Anthropic's.
func TestAnthropicBackendDefaultURL(t *testing.T) {
	c, _, err := parse([]byte("backends:\n  - type: anthropic\n    api_key: k\n"))
	if err != nil {
		t.Fatal(err)
	}
	if b := c.Backends[0]; b.URL != DefaultAnthropicURL || b.Name != TypeAnthropic {
		t.Errorf("backend %+v", b)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
}

func TestCheck(t *testing.T) {
	for _, tt := range checkTests {
		t.Run(tt.name, func(t *testing.T) {
			got := Check([]byte(tt.yaml))
			if len(got) != len(tt.want) {
				t.Fatalf("got %d problems; want %d:\n%s", len(got), len(tt.want), problemList(got))
			}
			for i, w := range tt.want {
				p := got[i]
				if p.Line != w.line || p.Path != w.path || !strings.Contains(p.Msg, w.msg) {
					t.Errorf("problem %d = {line %d, path %q, msg %q}; want {line %d, path %q, msg containing %q}", i, p.Line, p.Path, p.Msg, w.line, w.path, w.msg)
				}
				if s := p.Error(); !strings.HasPrefix(s, fmt.Sprintf("line %d: ", w.line)) {
					t.Errorf("Error() = %q; want it to start with the line", s)
				}
			}
		})
	}
}

// A YAML syntax error should carry its line in Problem.Line like every
// other problem, so that `dso config check` prints it the same way.
func TestCheckSyntaxErrorLine(t *testing.T) {
	ps := Check([]byte("listen: :8080\nlog_level: info\n  bad: indent\n"))
	if len(ps) != 1 {
		t.Fatalf("got %d problems; want 1:\n%s", len(ps), problemList(ps))
	}
	if !strings.Contains(ps[0].Error(), "line 3") {
		t.Errorf("Error() = %q; want it to name line 3", ps[0].Error())
	}
	if ps[0].Line != 3 {
		t.Errorf("Line = %d; want 3 (%q)", ps[0].Line, ps[0].Msg)
	}
}

// Issue 26: config check said ok for a key_file that made serve fail. It
// reads every file serve would, and names the field of each it cannot.
func TestCheckAllFiles(t *testing.T) {
	dir := t.TempDir()
	key, vectors := filepath.Join(dir, "node.key"), filepath.Join(dir, "vectors.txt")
	for _, f := range []string{key, vectors} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	absent := filepath.Join(dir, "absent")
	yaml := fmt.Sprintf("network:\n  id: hanzo\n  key_file: %s\nnetworks: []\nretrieval:\n  embedder: wordvec:%s\n  adapters:\n    nomic-embed-text:v1.5: %s\n    other: %s\n",
		absent+".key", absent+".txt", absent+".dsoalign", dir)
	want := []want{
		{line: 3, path: "network.key_file", msg: fmt.Sprintf("%q does not exist (make one with dso keygen)", absent+".key")},
		{line: 6, path: "retrieval.embedder", msg: fmt.Sprintf("%q does not exist", absent+".txt")},
		{line: 8, path: "retrieval.adapters.nomic-embed-text:v1.5", msg: fmt.Sprintf("%q does not exist (make one with dso align fit)", absent+".dsoalign")},
		{line: 9, path: "retrieval.adapters.other", msg: "is a directory"},
	}
	got := CheckAll([]byte(yaml))
	if len(got) != len(want) {
		t.Fatalf("got %d problems; want %d:\n%s", len(got), len(want), problemList(got))
	}
	for i, w := range want {
		if p := got[i]; p.Line != w.line || p.Path != w.path || !strings.Contains(p.Msg, w.msg) {
			t.Errorf("problem %d = {line %d, path %q, msg %q}; want {line %d, path %q, msg containing %q}", i, p.Line, p.Path, p.Msg, w.line, w.path, w.msg)
		}
	}
	if ps := Check([]byte(yaml)); len(ps) != 0 {
		t.Errorf("Check looked at the disk:\n%s", problemList(ps))
	}
	ok := fmt.Sprintf("networks:\n  - {id: a, key_file: %s}\nretrieval:\n  embedder: wordvec:%s\n", key, vectors)
	if ps := CheckAll([]byte(ok)); len(ps) != 0 {
		t.Errorf("files that are there:\n%s", problemList(ps))
	}
}

func problemList(ps []Problem) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "  line %d path %q: %s\n", p.Line, p.Path, p.Msg)
	}
	return b.String()
}

func TestApplyEnv(t *testing.T) {
	base := func() Config {
		c := Default()
		c.Listen = "file:1"
		c.Data = "/file"
		c.APIKeys = []Secret{"filekey"}
		return c
	}
	tests := []struct {
		name    string
		env     map[string]string
		check   func(t *testing.T, c Config)
		wantErr string
	}{
		{
			name: "nothing set keeps the file",
			check: func(t *testing.T, c Config) {
				if c.Listen != "file:1" || c.Data != "/file" || len(c.APIKeys) != 1 || c.Backends[0].URL != "http://127.0.0.1:11434" {
					t.Errorf("config changed: %+v", c)
				}
			},
		},
		{
			name: "DSO_LISTEN and DSO_DATA",
			env:  map[string]string{EnvListen: "0.0.0.0:9", EnvData: "/env"},
			check: func(t *testing.T, c Config) {
				if c.Listen != "0.0.0.0:9" || c.Data != "/env" {
					t.Errorf("listen %q data %q", c.Listen, c.Data)
				}
			},
		},
		{
			name: "DSO_BACKENDS replaces, names and defaults",
			env:  map[string]string{EnvBackends: "openai:https://api.example.com/v1, ,ollama:http://gpu:11434"},
			check: func(t *testing.T, c Config) {
				if len(c.Backends) != 2 {
					t.Fatalf("backends %+v", c.Backends)
				}
				b0, b1 := c.Backends[0], c.Backends[1]
				if b0.Type != TypeOpenAI || b0.URL != "https://api.example.com/v1" || b0.Name != "openai" {
					t.Errorf("backends[0] = %+v", b0)
				}
				if b1.Type != TypeOllama || b1.URL != "http://gpu:11434" || b1.Name != "ollama-2" {
					t.Errorf("backends[1] = %+v", b1)
				}
				if b1.Timeout != DefaultBackendTimeout || b1.Retries != DefaultRetries || b1.RetryBackoff != DefaultRetryBackoff {
					t.Errorf("backends[1] defaults not filled: %+v", b1)
				}
			},
		},
		{
			name:    "bad DSO_BACKENDS",
			env:     map[string]string{EnvBackends: "ollama:http://ok,vllm:http://h"},
			wantErr: "DSO_BACKENDS",
		},
		{
			name: "DSO_API_KEYS replaces, trimmed, empties dropped",
			env:  map[string]string{EnvAPIKeys: " k1 ,,k2, "},
			check: func(t *testing.T, c Config) {
				if len(c.APIKeys) != 2 || c.APIKeys[0].Reveal() != "k1" || c.APIKeys[1].Reveal() != "k2" {
					t.Errorf("keys %q", c.APIKeys)
				}
			},
		},
		{
			name: "DSO_OPEN_LIBRARY=1 opens the library",
			env:  map[string]string{EnvOpenLibrary: "1"},
			check: func(t *testing.T, c Config) {
				if !c.OpenLibrary {
					t.Error("OpenLibrary false; want true")
				}
			},
		},
		{
			name: "DSO_OPEN_LIBRARY=false keeps it closed",
			env:  map[string]string{EnvOpenLibrary: "false"},
			check: func(t *testing.T, c Config) {
				if c.OpenLibrary {
					t.Error("OpenLibrary true; want false")
				}
			},
		},
		{
			name:    "bad DSO_OPEN_LIBRARY",
			env:     map[string]string{EnvOpenLibrary: "yes please"},
			wantErr: EnvOpenLibrary,
		},
		{
			name: "DSO_TRUST_VOTER_HEADER=true trusts the header",
			env:  map[string]string{EnvTrustVoterHeader: "true"},
			check: func(t *testing.T, c Config) {
				if !c.TrustVoterHeader {
					t.Error("TrustVoterHeader false; want true")
				}
			},
		},
		{
			name:    "bad DSO_TRUST_VOTER_HEADER",
			env:     map[string]string{EnvTrustVoterHeader: "maybe"},
			wantErr: EnvTrustVoterHeader,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			err := c.ApplyEnv(func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v; want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
			if err := c.Validate(); err != nil {
				t.Errorf("Validate after ApplyEnv: %v", err)
			}
		})
	}
}

func TestParseBackendSpec(t *testing.T) {
	tests := []struct {
		spec    string
		typ     string
		url     string
		wantErr string
	}{
		{spec: "openai:https://api.openai.com/v1", typ: TypeOpenAI, url: "https://api.openai.com/v1"},
		{spec: "ollama:http://127.0.0.1:11434", typ: TypeOllama, url: "http://127.0.0.1:11434"},
		{spec: "  ollama:http://h:1  ", typ: TypeOllama, url: "http://h:1"},
		{spec: DefaultBackend, typ: TypeOllama, url: "http://127.0.0.1:11434"},
		{spec: "anthropic:https://gw.example.com", typ: TypeAnthropic, url: "https://gw.example.com"},
		{spec: "anthropic", typ: TypeAnthropic, url: DefaultAnthropicURL},
		{spec: "anthropic:", typ: TypeAnthropic, url: DefaultAnthropicURL},
		{spec: "", wantErr: "want TYPE:URL"},
		{spec: "ollama", wantErr: "want TYPE:URL"},
		{spec: "ollama:", wantErr: "want TYPE:URL"},
		{spec: "http://h:11434", wantErr: "is not openai, ollama or anthropic"},
		{spec: "vllm:http://h", wantErr: `"vllm" is not openai, ollama or anthropic`},
		{spec: ":http://h", wantErr: "must be openai, ollama or anthropic"},
		{spec: "openai:ftp://h", wantErr: "not an http(s) URL"},
		{spec: "openai:https://", wantErr: "not an http(s) URL"},
		{spec: "openai:h:80", wantErr: "not an http(s) URL"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			b, err := ParseBackendSpec(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseBackendSpec(%q) = %+v, %v; want error containing %q", tt.spec, b, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.Type != tt.typ || b.URL != tt.url {
				t.Errorf("got %s:%s; want %s:%s", b.Type, b.URL, tt.typ, tt.url)
			}
		})
	}
}

const secretKey = "sk-live-0123456789abcdef"

func TestSecretRedacted(t *testing.T) {
	s := Secret(secretKey)
	if s.Reveal() != secretKey {
		t.Fatalf("Reveal() = %q", s.Reveal())
	}
	if Secret("").String() != "" {
		t.Errorf("empty secret prints %q; want \"\"", Secret("").String())
	}
	b := Backend{Name: "cloud", Type: TypeOpenAI, URL: "https://h/v1", APIKey: s}
	c := Default()
	c.Backends = []Backend{b}
	c.APIKeys = []Secret{s}

	for _, verb := range []string{"%v", "%+v", "%s", "%q", "%x"} {
		for name, v := range map[string]any{"secret": s, "backend": b, "*backend": &b, "config": c, "keys": c.APIKeys} {
			if out := fmt.Sprintf(verb, v); strings.Contains(out, secretKey) || strings.Contains(out, fmt.Sprintf("%x", secretKey)) {
				t.Errorf("fmt %s of %s prints the key: %s", verb, name, out)
			}
		}
	}
	if out := fmt.Sprint(s); out != "REDACTED" {
		t.Errorf("fmt.Sprint = %q; want REDACTED", out)
	}

	logged := func(h func(*bytes.Buffer) slog.Handler, args ...any) string {
		var buf bytes.Buffer
		slog.New(h(&buf)).Info("msg", args...)
		return buf.String()
	}
	handlers := map[string]func(*bytes.Buffer) slog.Handler{
		"text": func(w *bytes.Buffer) slog.Handler { return slog.NewTextHandler(w, nil) },
		"json": func(w *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(w, nil) },
	}
	for hn, h := range handlers {
		for name, args := range map[string][]any{
			"attr":       {"key", s},
			"slog.Any":   {slog.Any("key", s)},
			"group attr": {slog.Group("backend", "api_key", b.APIKey)},
		} {
			out := logged(h, args...)
			if strings.Contains(out, secretKey) {
				t.Errorf("slog %s handler, %s: logs the key: %s", hn, name, out)
			}
		}
		if out := logged(h, "key", s); !strings.Contains(out, "REDACTED") {
			t.Errorf("slog %s handler: %s; want REDACTED", hn, out)
		}
	}
	// A whole struct through the text handler goes through fmt: redacted.
	if out := logged(handlers["text"], "backend", b, "config", c); strings.Contains(out, secretKey) {
		t.Errorf("slog text handler logs the key of a struct: %s", out)
	}
}

// A Secret inside a struct or slice logged by slog's JSON handler (the one
// `dso serve` uses) goes through encoding/json, which knows nothing of
// String or LogValue, and %#v uses Go syntax: MarshalJSON and GoString
// redact there too.
func TestSecretRedactedInJSONAndGoSyntax(t *testing.T) {
	b := Backend{Name: "cloud", APIKey: Secret(secretKey)}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("msg", "backend", b, "keys", []Secret{Secret(secretKey)})
	gosyntax := fmt.Sprintf("%#v", b.APIKey)
	if strings.Contains(buf.String(), secretKey) || strings.Contains(gosyntax, secretKey) {
		t.Errorf("a Secret prints in slog JSON of a struct or []Secret (%v) or in %%#v (%v)",
			strings.Contains(buf.String(), secretKey), strings.Contains(gosyntax, secretKey))
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	if c.Listen != DefaultListen || c.Data != DefaultData || c.MaxBodyBytes != DefaultMaxBodyBytes || c.ShutdownTimeout != DefaultShutdownTimeout || c.LogLevel != "info" {
		t.Errorf("defaults: %+v", c)
	}
	if len(c.Backends) != 1 || c.Backends[0].Type != TypeOllama || c.Backends[0].Name != "ollama" || c.Backends[0].Timeout != 5*time.Minute {
		t.Errorf("default backend: %+v", c.Backends)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Default() does not validate: %v", err)
	}
	// Low-confidence lessons are not injected unless the operator asks.
	if c.Retrieval.MinConfidence != DefaultMinConfidence || DefaultMinConfidence <= 0 {
		t.Errorf("default min_confidence %v; want the floor %v", c.Retrieval.MinConfidence, DefaultMinConfidence)
	}
	c.Retrieval.MinConfidence = -1 // no floor
	if err := c.Validate(); err != nil {
		t.Errorf("a negative min_confidence (no floor) does not validate: %v", err)
	}
}

// FuzzCheck: Check never panics, and every problem it reports is on a line
// of the input (or 0).
func FuzzCheck(f *testing.F) {
	for _, tt := range checkTests {
		f.Add([]byte(tt.yaml))
	}
	f.Add([]byte("backends: *x\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("backends:\n  - &b {type: ollama, url: 'http://h'}\n  - *b\n"))
	f.Add([]byte("listen: 1\n  bad: indent"))
	f.Add([]byte("---\nlisten: a\n---\nlisten: b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// YAML breaks lines at \n, \r\n, \r, NEL, LS and PS.
		norm := strings.NewReplacer("\r\n", "\n", "\r", "\n", "\u0085", "\n", "\u2028", "\n", "\u2029", "\n").Replace(string(data))
		lines := strings.Count(norm, "\n") + 1
		for _, p := range Check(data) {
			if p.Line < 0 || p.Line > lines {
				t.Errorf("problem %q on line %d of a %d-line input", p.Error(), p.Line, lines)
			}
			if p.Msg == "" {
				t.Errorf("problem with no message: %+v", p)
			}
		}
	})
}

func TestIsLoopback(t *testing.T) {
	for _, tt := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:8080", true},
		{"127.1.2.3:8080", true},
		{"localhost:8080", true},
		{"LocalHost.:8080", true},
		{"[::1]:8080", true},
		{"[::ffff:127.0.0.1]:8080", true},
		{"::1", true},
		{":8080", false}, // every interface
		{"0.0.0.0:8080", false},
		{"[::]:8080", false},
		{"10.1.2.3:80", false},
		{"[2001:db8::1]:80", false},
		{"example.com:80", false},
		{"localhost.example.com:80", false},
		{"", false},
	} {
		if got := IsLoopback(tt.addr); got != tt.want {
			t.Errorf("IsLoopback(%q) = %v; want %v", tt.addr, got, tt.want)
		}
	}
}

func TestRedisURL(t *testing.T) {
	for _, tt := range []struct {
		url string
		ok  bool
	}{
		{"", true},
		{"redis://127.0.0.1:6379/0", true},
		{"rediss://user:secret@redis.example:6380/2", true},
		{"http://redis:6379", false},
		{"redis-host:6379", false},
		{"redis://user:secret@[bad", false},
	} {
		c := Default()
		c.Redis = Secret(tt.url)
		err := c.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("redis %q: Validate = %v; want ok %v", tt.url, err, tt.ok)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("redis %q: the error shows the password: %v", tt.url, err)
		}
	}
	c := Default()
	if err := c.ApplyEnv(func(k string) string {
		if k == EnvRedis {
			return "redis://r:6379/0"
		}
		return ""
	}); err != nil || c.Redis != "redis://r:6379/0" {
		t.Errorf("DSO_REDIS: %q, %v", c.Redis, err)
	}
}

// DSO_TRUST_VOTER_HEADER overrides trust_voter_header from the file both
// ways; unset, the file's setting stands.
func TestEnvTrustVoterHeaderOverridesFile(t *testing.T) {
	for _, tc := range []struct {
		file bool
		env  string
		want bool
	}{{true, "0", false}, {true, "", true}, {false, "1", true}, {false, "", false}} {
		c := Default()
		c.TrustVoterHeader = tc.file
		if err := c.ApplyEnv(func(k string) string {
			if k == EnvTrustVoterHeader {
				return tc.env
			}
			return ""
		}); err != nil {
			t.Fatal(err)
		}
		if c.TrustVoterHeader != tc.want {
			t.Errorf("file %v, %s=%q: %v; want %v", tc.file, EnvTrustVoterHeader, tc.env, c.TrustVoterHeader, tc.want)
		}
	}
}

// Load, which serve uses, says what config check says: no Go type names.
func TestLoadDecodeErrorsInFileTerms(t *testing.T) {
	file := filepath.Join(t.TempDir(), "dso.yaml")
	if err := os.WriteFile(file, []byte("retreival:\n  budget: fast\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(file)
	if err == nil {
		t.Fatal("Load: no error")
	}
	for _, want := range []string{"line 1: unknown field retreival; did you mean retrieval?"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Load: %v; want it to contain %q", err, want)
		}
	}
	for _, goTerm := range []string{"config.Config", "time.Duration", "!!str"} {
		if strings.Contains(err.Error(), goTerm) {
			t.Errorf("Load: %v; names %s", err, goTerm)
		}
	}
}
