package proxy_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/proxy"
	"github.com/ollama/ollama/api"
)

// Issue 22: `OLLAMA_HOST=<dso> ollama run M` and Open WebUI call Ollama's
// model API besides chat. These tests drive dso with the official client
// in the order `ollama run` makes its calls.

// statusOf returns err's status from the Ollama client, or fails.
func statusOf(t *testing.T, err error) api.StatusError {
	t.Helper()
	var se api.StatusError
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T); want an api.StatusError", err, err)
	}
	return se
}

// ollamaRun makes `ollama run model`'s calls: HEAD /, show (on 404: pull,
// then show again), the preload (show, generate with no prompt), a chat turn,
// then ps and, as Open WebUI does, an unload. It returns the pull's
// statuses (none when show found the model at once).
func ollamaRun(t *testing.T, c *api.Client, model string) (pulled []string) {
	t.Helper()
	ctx := context.Background()
	if err := c.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	show, err := c.Show(ctx, &api.ShowRequest{Name: model}) // the CLI sends the deprecated name
	if err != nil {
		if se := statusOf(t, err); se.StatusCode != http.StatusNotFound {
			t.Fatalf("show: %v", err)
		}
		err = c.Pull(ctx, &api.PullRequest{Name: model}, func(p api.ProgressResponse) error {
			pulled = append(pulled, p.Status)
			return nil
		})
		if err != nil {
			t.Fatalf("pull: %v", err)
		}
		if show, err = c.Show(ctx, &api.ShowRequest{Name: model}); err != nil {
			t.Fatalf("show after pull: %v", err)
		}
	}
	if !slices.Contains(show.Capabilities, "completion") || !slices.Contains(show.Capabilities, "tools") {
		t.Errorf("capabilities %v", show.Capabilities)
	}
	if _, ok := show.ModelInfo["general.architecture"].(string); !ok {
		t.Errorf("model_info %v has no general.architecture", show.ModelInfo)
	}
	if len(show.ProjectorInfo) != 0 {
		t.Errorf("projector_info %v", show.ProjectorInfo)
	}

	// The preload: show once more, then generate with no prompt.
	if _, err := c.Show(ctx, &api.ShowRequest{Model: model}); err != nil {
		t.Fatalf("preload show: %v", err)
	}
	var load []api.GenerateResponse
	if err := c.Generate(ctx, &api.GenerateRequest{Model: model}, func(r api.GenerateResponse) error {
		load = append(load, r)
		return nil
	}); err != nil {
		t.Fatalf("preload: %v", err)
	}
	if len(load) != 1 || !load[0].Done || load[0].DoneReason != "load" || load[0].Response != "" {
		t.Errorf("preload answered %+v", load)
	}

	var text strings.Builder
	if err := c.Chat(ctx, &api.ChatRequest{Model: model, Messages: []api.Message{{Role: "user", Content: "Capital of France?"}}}, func(r api.ChatResponse) error {
		text.WriteString(r.Message.Content)
		return nil
	}); err != nil {
		t.Fatalf("chat: %v", err)
	}
	if text.String() != "The capital of France is Paris." {
		t.Errorf("chat %q", text.String())
	}

	ps, err := c.ListRunning(ctx)
	if err != nil {
		t.Fatalf("ps: %v", err)
	}
	for _, m := range ps.Models {
		_ = m.Digest[:12] // `ollama ps` prints this
	}

	var unload []api.GenerateResponse
	if err := c.Generate(ctx, &api.GenerateRequest{Model: model, KeepAlive: &api.Duration{}}, func(r api.GenerateResponse) error {
		unload = append(unload, r)
		return nil
	}); err != nil {
		t.Fatalf("unload: %v", err)
	}
	if len(unload) != 1 || !unload[0].Done || unload[0].DoneReason != "unload" {
		t.Errorf("unload answered %+v", unload)
	}
	return pulled
}

func TestOllamaRunOverOllamaBackend(t *testing.T) {
	be := newBackend(t, "ollama")
	fe := newFrontend(t, []config.Backend{ollamaCfg(be)})
	c := ollamaClient(t, fe)

	// A model the backend lacks: show 404s, the pull is relayed with its
	// progress, and show then finds it.
	pulled := ollamaRun(t, c, "qwen2.5:0.5b")
	var want []string
	for _, l := range splitKeep(golden(t, "ollama/pull_stream.ndjson"), "\n") {
		var p api.ProgressResponse
		if err := json.Unmarshal(l, &p); err != nil {
			t.Fatal(err)
		}
		want = append(want, p.Status)
	}
	if !slices.Equal(pulled, want) {
		t.Errorf("pull progress %q; want %q", pulled, want)
	}
	var paths []string
	for _, r := range be.requests() {
		paths = append(paths, r.Method+" "+r.Path)
	}
	wantPaths := []string{"POST /api/show", "POST /api/pull", "POST /api/show", "POST /api/show", "POST /api/generate", "POST /api/chat", "GET /api/ps", "POST /api/generate"}
	if !slices.Equal(paths, wantPaths) {
		t.Errorf("backend got %q; want %q", paths, wantPaths)
	}

	// A model it has: shown at once, with what Ollama says of it.
	show, err := c.Show(context.Background(), &api.ShowRequest{Model: "llama3.2"})
	if err != nil {
		t.Fatal(err)
	}
	if show.ModelInfo["llama.context_length"] != float64(131072) || show.Details.QuantizationLevel != "Q4_K_M" {
		t.Errorf("show %+v", show)
	}
}

func TestOllamaRunOverOpenAIBackend(t *testing.T) {
	be := newBackend(t, "openai")
	fe := newFrontend(t, []config.Backend{openaiCfg(be)})
	c := ollamaClient(t, fe)
	ctx := context.Background()

	// Nothing to pull for a model the backend lists: show finds it.
	if pulled := ollamaRun(t, c, "gpt-4o-2024-08-06"); pulled != nil {
		t.Errorf("pulled %q for a listed model", pulled)
	}
	var statuses []string
	if err := c.Pull(ctx, &api.PullRequest{Model: "gpt-4o-2024-08-06"}, func(p api.ProgressResponse) error {
		statuses = append(statuses, p.Status)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"pulling manifest", "success"}; !slices.Equal(statuses, want) {
		t.Errorf("pull %q; want %q", statuses, want)
	}
	ps, err := c.ListRunning(ctx)
	if err != nil || len(ps.Models) != 0 {
		t.Errorf("ps %+v, %v; want no models", ps, err)
	}

	// A model it does not list: show 404s as Ollama does, and pull says
	// why dso cannot help.
	_, err = c.Show(ctx, &api.ShowRequest{Model: "llama3.2"})
	if se := statusOf(t, err); se.StatusCode != http.StatusNotFound || se.ErrorMessage != `model "llama3.2" not found` {
		t.Errorf("show: %+v", se)
	}
	err = c.Pull(ctx, &api.PullRequest{Model: "llama3.2"}, func(api.ProgressResponse) error { return nil })
	if se := statusOf(t, err); se.StatusCode != http.StatusNotFound || !strings.Contains(se.ErrorMessage, "cannot pull models onto an OpenAI-compatible server") {
		t.Errorf("pull: %+v", se)
	}
}

// The preload and unload over an OpenAI backend are answered by dso alone;
// keep_alive 0 is read as Ollama reads it.
func TestOllamaGenerateLoadOverOpenAIBackend(t *testing.T) {
	be := newBackend(t, "openai")
	fe := newFrontend(t, []config.Backend{openaiCfg(be)}, withRetrieval(newHashLibrary(t), time.Second))
	for _, tc := range []struct{ body, reason string }{
		{`{"model":"m"}`, "load"},
		{`{"model":"m","prompt":""}`, "load"},
		{`{"model":"m","prompt":null,"keep_alive":"5m"}`, "load"},
		{`{"model":"m","keep_alive":-1}`, "load"},
		{`{"model":"m","keep_alive":0}`, "unload"},
		{`{"model":"m","keep_alive":"0"}`, "unload"},
		{`{"model":"m","keep_alive":"0s"}`, "unload"},
		{`{"model":"m","prompt":"","keep_alive":"0m"}`, "unload"},
	} {
		code, hdr, body := post(t, fe.URL+"/api/generate", tc.body)
		var got map[string]any
		if err := json.Unmarshal(body, &got); err != nil || code != http.StatusOK {
			t.Fatalf("%s: %d %s", tc.body, code, body)
		}
		if got["model"] != "m" || got["response"] != "" || got["done"] != true || got["done_reason"] != tc.reason || got["created_at"] == nil {
			t.Errorf("%s: got %s; want done_reason %q", tc.body, body, tc.reason)
		}
		if hdr.Get(proxy.HeaderTraceID) != "" {
			t.Errorf("%s: a trace for a load", tc.body)
		}
	}
	if n := len(be.requests()); n != 0 {
		t.Errorf("the backend got %d requests for loads; want none", n)
	}
	// Chat with no messages is Ollama's chat-style load, answered alike.
	for _, tc := range []struct{ body, reason string }{
		{`{"model":"m","messages":[]}`, "load"},
		{`{"model":"m","messages":[],"keep_alive":0}`, "unload"},
	} {
		code, _, body := post(t, fe.URL+"/api/chat", tc.body)
		var got api.ChatResponse
		if err := json.Unmarshal(body, &got); err != nil || code != http.StatusOK || !got.Done || got.DoneReason != tc.reason || got.Message.Role != "assistant" {
			t.Errorf("chat %s: %d %s; want done_reason %q", tc.body, code, body, tc.reason)
		}
	}
	if n := len(be.requests()); n != 0 {
		t.Errorf("the backend got %d requests for chat loads; want none", n)
	}
	if code, _, body := post(t, fe.URL+"/api/generate", `{"model":"m","keep_alive":true}`); code != http.StatusBadRequest || !strings.Contains(string(body), "keep_alive") {
		t.Errorf("bad keep_alive: %d %s", code, body)
	}
	// A prompt still goes to the backend, with a trace.
	code, hdr, body := post(t, fe.URL+"/api/generate", `{"model":"m","prompt":"hi","stream":false}`)
	if code != http.StatusOK || len(be.requests()) != 1 || hdr.Get(proxy.HeaderTraceID) == "" {
		t.Errorf("generate with a prompt: %d %s, %d backend requests, trace %q", code, body, len(be.requests()), hdr.Get(proxy.HeaderTraceID))
	}
}

// Over an Ollama backend every route is relayed: the request reaches the
// backend byte for byte, and its answer the client.
func TestOllamaModelRoutesRelayedUnchanged(t *testing.T) {
	be := newBackend(t, "ollama")
	fe := newFrontend(t, []config.Backend{ollamaCfg(be)})
	for _, tc := range []struct {
		method, path, body, golden string
	}{
		{"POST", "/api/show", `{"model":"llama3.2","verbose":false,"x_unknown":[1,null]}`, "ollama/show.json"},
		{"POST", "/api/pull", `{"model":"llama3.2","insecure":false, "x_unknown":true}`, "ollama/pull_stream.ndjson"},
		{"GET", "/api/ps", ``, "ollama/ps.json"},
		{"POST", "/api/generate", `{"model":"llama3.2","keep_alive":"10m","x_unknown":1}`, "ollama/generate_load.json"},
		{"POST", "/api/generate", `{"model":"llama3.2","prompt":"","keep_alive":0}`, "ollama/generate_unload.json"},
		{"POST", "/api/embeddings", `{"model":"llama3.2","prompt":"hello","options":{"num_ctx":512}}`, "ollama/embeddings.json"},
		{"POST", "/api/create", `{"model":"mine","from":"llama3.2","system":"Be brief."}`, "ollama/create_stream.ndjson"},
		{"POST", "/api/push", `{"model":"llama3.2","stream":true}`, "ollama/push_stream.ndjson"},
		{"POST", "/api/copy", `{"source":"llama3.2","destination":"llama3.2-backup"}`, ""},
		{"DELETE", "/api/delete", `{"model":"llama3.2-backup"}`, ""},
	} {
		t.Run(tc.method+tc.path, func(t *testing.T) {
			code, _, body := send(t, tc.method, fe.URL+tc.path, tc.body)
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, body)
			}
			var want []byte
			if tc.golden != "" {
				want = golden(t, tc.golden)
			}
			if !bytes.Equal(body, want) {
				t.Errorf("client got %q; want %q", body, want)
			}
			got := be.last(t)
			if got.Method != tc.method || got.Path != tc.path || string(got.Body) != tc.body {
				t.Errorf("backend got %s %s %q; want %s %s %q", got.Method, got.Path, got.Body, tc.method, tc.path, tc.body)
			}
		})
	}
	// An error from the backend reaches the client as Ollama wrote it.
	code, _, body := post(t, fe.URL+"/api/show", `{"model":"nope"}`)
	if code != http.StatusNotFound || string(body) != `{"error":"model 'nope' not found"}` {
		t.Errorf("show of a model the backend lacks: %d %s", code, body)
	}
}

// The model-management routes work through the official client over an
// Ollama backend and are refused, saying why, over an OpenAI one.
func TestOllamaManageRoutes(t *testing.T) {
	ctx := context.Background()
	progress := func(got *[]string) func(api.ProgressResponse) error {
		return func(p api.ProgressResponse) error { *got = append(*got, p.Status); return nil }
	}
	t.Run("backend=ollama", func(t *testing.T) {
		be := newBackend(t, "ollama")
		fe := newFrontend(t, []config.Backend{ollamaCfg(be)})
		c := ollamaClient(t, fe)
		if err := c.Copy(ctx, &api.CopyRequest{Source: "llama3.2", Destination: "b"}); err != nil {
			t.Error(err)
		}
		if err := c.Delete(ctx, &api.DeleteRequest{Model: "b"}); err != nil {
			t.Error(err)
		}
		var created, pushed []string
		if err := c.Create(ctx, &api.CreateRequest{Model: "mine", From: "llama3.2"}, progress(&created)); err != nil || created[len(created)-1] != "success" {
			t.Errorf("create %q, %v", created, err)
		}
		if err := c.Push(ctx, &api.PushRequest{Model: "llama3.2"}, progress(&pushed)); err != nil || pushed[len(pushed)-1] != "success" {
			t.Errorf("push %q, %v", pushed, err)
		}
		blob := []byte("GGUF\x03\x00\x00\x00 a model file")
		sum := sha256.Sum256(blob)
		digest := "sha256:" + hex.EncodeToString(sum[:])
		if code := head(t, fe.URL+"/api/blobs/"+digest); code != http.StatusNotFound {
			t.Errorf("HEAD of a missing blob: %d", code)
		}
		if err := c.CreateBlob(ctx, digest, bytes.NewReader(blob)); err != nil {
			t.Fatal(err)
		}
		if got := be.last(t); got.Path != "/api/blobs/"+digest || !bytes.Equal(got.Body, blob) {
			t.Errorf("backend got %s %q", got.Path, got.Body)
		}
		if code := head(t, fe.URL+"/api/blobs/"+digest); code != http.StatusOK {
			t.Errorf("HEAD of a stored blob: %d", code)
		}
		err := c.CreateBlob(ctx, "sha256:"+strings.Repeat("0", 64), bytes.NewReader(blob))
		if se := statusOf(t, err); se.StatusCode != http.StatusBadRequest || se.ErrorMessage != "digest mismatch" {
			t.Errorf("mismatched blob: %+v", se)
		}
		n := len(be.requests())
		err = c.CreateBlob(ctx, "sha256:"+strings.Repeat("0", 63)+"g", bytes.NewReader(blob))
		if se := statusOf(t, err); se.StatusCode != http.StatusBadRequest || !strings.Contains(se.ErrorMessage, "invalid digest") || len(be.requests()) != n {
			t.Errorf("bad digest: %+v (backend requests %d → %d)", se, n, len(be.requests()))
		}
	})
	t.Run("backend=openai", func(t *testing.T) {
		be := newBackend(t, "openai")
		fe := newFrontend(t, []config.Backend{openaiCfg(be)})
		c := ollamaClient(t, fe)
		for name, err := range map[string]error{
			"copy":   c.Copy(ctx, &api.CopyRequest{Source: "gpt-4o-2024-08-06", Destination: "b"}),
			"delete": c.Delete(ctx, &api.DeleteRequest{Model: "gpt-4o-2024-08-06"}),
			"create": c.Create(ctx, &api.CreateRequest{Model: "mine", From: "gpt-4o-2024-08-06"}, progress(new([]string))),
			"push":   c.Push(ctx, &api.PushRequest{Model: "gpt-4o-2024-08-06"}, progress(new([]string))),
			"blob":   c.CreateBlob(ctx, "sha256:"+strings.Repeat("a", 64), strings.NewReader("x")),
		} {
			se := statusOf(t, err)
			if se.StatusCode != http.StatusNotImplemented || !strings.Contains(se.ErrorMessage, "Ollama") {
				t.Errorf("%s: %+v; want 501 saying why", name, se)
			}
		}
		if code := head(t, fe.URL+"/api/blobs/sha256:"+strings.Repeat("a", 64)); code != http.StatusNotImplemented {
			t.Errorf("HEAD blob: %d", code)
		}
		if n := len(be.requests()); n != 0 {
			t.Errorf("the backend got %d requests; want none", n)
		}
	})
}

func head(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Head(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Blob uploads are streamed: a blob far larger than MaxBodyBytes goes
// through, and one larger than MaxBlobBytes is refused, with or without a
// Content-Length.
func TestOllamaBlobStreamed(t *testing.T) {
	be := newBackend(t, "ollama")
	fe := newFrontend(t, []config.Backend{ollamaCfg(be)}, func(o *proxy.Options, _ []config.Backend) {
		o.MaxBodyBytes = 1 << 10
		o.MaxBlobBytes = 1 << 20
	})
	c := ollamaClient(t, fe)
	ctx := context.Background()
	blob := bytes.Repeat([]byte("0123456789abcdef"), 1<<14) // 256 KiB
	sum := sha256.Sum256(blob)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	// Without a length (the reader hides its size), sent chunked.
	if err := c.CreateBlob(ctx, digest, struct{ io.Reader }{bytes.NewReader(blob)}); err != nil {
		t.Fatal(err)
	}
	if got := be.last(t); !bytes.Equal(got.Body, blob) {
		t.Errorf("backend got %d bytes; want the %d of the blob", len(got.Body), len(blob))
	}

	big := bytes.Repeat(blob, 5)
	sum = sha256.Sum256(big)
	digest = "sha256:" + hex.EncodeToString(sum[:])
	for name, body := range map[string]io.Reader{"with length": bytes.NewReader(big), "chunked": struct{ io.Reader }{bytes.NewReader(big)}} {
		err := c.CreateBlob(ctx, digest, body)
		if se := statusOf(t, err); se.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("%s: %+v; want 413", name, se)
		}
	}
	if code := head(t, fe.URL+"/api/blobs/"+digest); code != http.StatusNotFound {
		t.Errorf("the blob over the bound was stored: HEAD %d", code)
	}
}

// Every digest dso makes for an OpenAI backend's model is long enough for
// the CLI's Digest[:12], distinct per model and stable.
func TestOllamaDigestsOfOpenAIModels(t *testing.T) {
	oa, ol := newBackend(t, "openai"), newBackend(t, "ollama")
	ocfg := openaiCfg(oa)
	ocfg.Models = []string{"gpt-*", "text-embedding-*"}
	fe := newFrontend(t, []config.Backend{ocfg, ollamaCfg(ol)})
	c := ollamaClient(t, fe)
	ctx := context.Background()
	list := func() map[string]api.ListModelResponse {
		tags, err := c.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]api.ListModelResponse{}
		for _, m := range tags.Models {
			out[m.Name] = m
		}
		return out
	}
	first, again := list(), list()
	seen := map[string]string{}
	for name, m := range first {
		if _, err := hex.DecodeString(m.Digest); err != nil || len(m.Digest) < 12 {
			t.Errorf("%s: digest %q", name, m.Digest)
			continue
		}
		if other, dup := seen[m.Digest[:12]]; dup {
			t.Errorf("%s and %s share digest %s", name, other, m.Digest[:12])
		}
		seen[m.Digest[:12]] = name
		if again[name].Digest != m.Digest {
			t.Errorf("%s: digest %q then %q", name, m.Digest, again[name].Digest)
		}
	}
	if len(first) != 4 || first["llama3.2:latest"].Digest != "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72" {
		t.Errorf("tags %+v", first)
	}
	if d := first["gpt-4o-2024-08-06"].Details; d.Family != "gpt" {
		t.Errorf("details of gpt-4o: %+v", d)
	}
	ps, err := c.ListRunning(ctx)
	if err != nil || len(ps.Models) != 1 || len(ps.Models[0].Digest) < 12 {
		t.Fatalf("ps %+v, %v", ps, err)
	}
}

// What dso can say of an OpenAI backend's models in /api/show.
func TestOllamaShowOfOpenAIModels(t *testing.T) {
	be := newBackend(t, "openai")
	be.setOverride(func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		if r.URL.Path != "/v1/models" {
			return false
		}
		writeBody(w, []byte(`{"object":"list","data":[{"id":"meta-llama/Llama-3.1-8B-Instruct","object":"model","created":1722814719,"owned_by":"vllm"},{"id":"qwen2.5:0.5b","object":"model","created":0},{"id":"o1","object":"model","created":0},{"id":"text-embedding-3-small","object":"model","created":0}]}`))
		return true
	})
	fe := newFrontend(t, []config.Backend{openaiCfg(be)})
	c := ollamaClient(t, fe)
	for _, tc := range []struct {
		model, family, size, caps string
	}{
		{"meta-llama/Llama-3.1-8B-Instruct", "llama", "8B", "completion,tools"},
		{"qwen2.5:0.5b", "qwen", "0.5B", "completion,tools"},
		{"o1", "", "", "completion,tools"},
		{"text-embedding-3-small", "text", "", "embedding"},
	} {
		show, err := c.Show(context.Background(), &api.ShowRequest{Model: tc.model})
		if err != nil {
			t.Fatalf("%s: %v", tc.model, err)
		}
		var caps []string
		for _, c := range show.Capabilities {
			caps = append(caps, string(c))
		}
		if show.Details.Family != tc.family || show.Details.ParameterSize != tc.size || strings.Join(caps, ",") != tc.caps ||
			show.ModelInfo["general.architecture"] != tc.family || show.Details.Format != "" || show.ModifiedAt.IsZero() {
			t.Errorf("%s: %+v; want family %q, size %q, capabilities %s", tc.model, show, tc.family, tc.size, tc.caps)
		}
	}
}

// A model no backend serves is Ollama's 404, through the official client.
func TestOllamaUnknownModel(t *testing.T) {
	be := newBackend(t, "ollama")
	cfg := ollamaCfg(be)
	cfg.Models = []string{"llama*"}
	fe := newFrontend(t, []config.Backend{cfg})
	c := ollamaClient(t, fe)
	ctx := context.Background()
	calls := map[string]error{
		"show": func() error { _, err := c.Show(ctx, &api.ShowRequest{Model: "gpt-9"}); return err }(),
		"pull": c.Pull(ctx, &api.PullRequest{Model: "gpt-9"}, func(api.ProgressResponse) error { return nil }),
		"copy": c.Copy(ctx, &api.CopyRequest{Source: "gpt-9", Destination: "x"}),
		"embeddings": func() error {
			_, err := c.Embeddings(ctx, &api.EmbeddingRequest{Model: "gpt-9", Prompt: "x"})
			return err
		}(),
	}
	for name, err := range calls {
		if se := statusOf(t, err); se.StatusCode != http.StatusNotFound || se.ErrorMessage != `model "gpt-9" not found` {
			t.Errorf("%s: %+v", name, se)
		}
	}
	if n := len(be.requests()); n != 0 {
		t.Errorf("the backend got %d requests; want none", n)
	}
	code, _, body := post(t, fe.URL+"/api/show", `{"model":""}`)
	if code != http.StatusBadRequest || string(body) != `{"error":"model is required"}` {
		t.Errorf("show without a model: %d %s", code, body)
	}
}

// /api/ps merges the Ollama backends, each listing the models routed to
// it; a failing backend is left out, and only all failing is an error.
func TestOllamaPSMerged(t *testing.T) {
	a, b, bad := newBackend(t, "ollama"), newBackend(t, "ollama"), newBackend(t, "ollama")
	b.setOverride(func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		if r.URL.Path != "/api/ps" {
			return false
		}
		ps := strings.ReplaceAll(string(golden(t, "ollama/ps.json")), "llama3.2:latest", "qwen2.5:7b")
		writeBody(w, []byte(ps))
		return true
	})
	bad.setOverride(func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		writeStatus(w, http.StatusInternalServerError, `{"error":"boom"}`)
		return true
	})
	oa := newBackend(t, "openai")
	acfg := ollamaCfg(a)
	acfg.Models = []string{"llama*"}
	badcfg := ollamaCfg(bad)
	badcfg.Models = []string{"mistral*"}
	fe := newFrontend(t, []config.Backend{acfg, badcfg, ollamaCfg(b), openaiCfg(oa)})
	ps, err := ollamaClient(t, fe).ListRunning(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range ps.Models {
		names = append(names, m.Name)
	}
	// b's ps lists qwen only; a's llama3.2 routes to a. b would list
	// llama3.2 too without its override: listed once, by a.
	if want := []string{"llama3.2:latest", "qwen2.5:7b"}; !slices.Equal(names, want) {
		t.Errorf("ps %q; want %q", names, want)
	}
	if ps.Models[0].ContextLength != 4096 || ps.Models[0].SizeVRAM != 3583551488 || ps.Models[0].ExpiresAt.IsZero() {
		t.Errorf("ps entry %+v", ps.Models[0])
	}
	if n := len(oa.requests()); n != 0 {
		t.Errorf("the OpenAI backend got %d requests", n)
	}

	only := newFrontend(t, []config.Backend{ollamaCfg(bad), openaiCfg(oa)})
	_, err = ollamaClient(t, only).ListRunning(context.Background())
	if se := statusOf(t, err); se.StatusCode != http.StatusInternalServerError || se.ErrorMessage != "boom" {
		t.Errorf("all failing: %+v", se)
	}
}

// POST /api/embeddings over an OpenAI backend is translated both ways; an
// empty prompt (Ollama's load) is answered without the backend.
func TestOllamaLegacyEmbeddingsOverOpenAIBackend(t *testing.T) {
	be := newBackend(t, "openai")
	fe := newFrontend(t, []config.Backend{openaiCfg(be)})
	c := ollamaClient(t, fe)
	res, err := c.Embeddings(context.Background(), &api.EmbeddingRequest{Model: "text-embedding-3-small", Prompt: "hello", Options: map[string]any{"num_ctx": 512}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []float64{0.0023064255, -0.009327292, 0.015797347, -0.0077780345}; !slices.Equal(res.Embedding, want) {
		t.Errorf("embedding %v; want %v", res.Embedding, want)
	}
	if got, want := string(be.last(t).Body), `{"model":"text-embedding-3-small","input":"hello"}`; got != want {
		t.Errorf("backend got %s; want %s", got, want)
	}
	n := len(be.requests())
	code, _, body := post(t, fe.URL+"/api/embeddings", `{"model":"text-embedding-3-small","prompt":""}`)
	if code != http.StatusOK || string(body) != `{"embedding":[]}` || len(be.requests()) != n {
		t.Errorf("load: %d %s (backend requests %d → %d)", code, body, n, len(be.requests()))
	}
	code, _, body = post(t, fe.URL+"/api/embeddings", `{"model":"text-embedding-3-small","prompt":5}`)
	if code != http.StatusBadRequest {
		t.Errorf("prompt 5: %d %s", code, body)
	}
}
