package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dso-proxy/dso/providers"
)

// envRunMain makes the test binary act as dso itself, so tests can run it
// as a real process and kill it.
const envRunMain = "DSO_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(envRunMain) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// startDSO runs `dso serve` as a child process and returns its address.
func startDSO(t *testing.T, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"serve", "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), envRunMain+"=1")
	return cmd, startServing(t, cmd)
}

// startServing starts cmd, a dso serve, and returns the base URL it logs
// ("dso listening", JSON on stderr). The test's cleanup kills it.
func startServing(tb testing.TB, cmd *exec.Cmd) string {
	tb.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "dso listening" {
				addr <- line.Addr
			}
		}
	}()
	select {
	case a := <-addr:
		return "http://" + a
	case <-time.After(60 * time.Second):
		tb.Fatal("dso did not start")
	}
	return ""
}

// Feedback accepted before dso is killed (SIGKILL, no clean stop, the
// lesson half-distilled) is distilled by the next dso on the same data.
func TestFeedbackSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts dso processes")
	}
	hash := providers.NewHashEmbedder(256, 5)
	var answerDistill atomic.Bool
	distillAsked := make(chan struct{}, 8)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/v1/embeddings" {
			var req struct{ Input []string }
			json.Unmarshal(body, &req)
			vs, _ := hash.Embed(r.Context(), req.Input)
			data := make([]map[string]any, len(vs))
			for i, v := range vs {
				data[i] = map[string]any{"object": "embedding", "index": i, "embedding": v}
			}
			json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": data})
			return
		}
		answer := "Forty-two."
		if bytes.Contains(body, []byte("You distil reusable lessons")) {
			distillAsked <- struct{}{}
			if !answerDistill.Load() {
				<-r.Context().Done() // the first dso dies while waiting here
				return
			}
			answer = "When asked for the answer to everything, say forty-two."
		}
		fmt.Fprintf(w, `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"stop"}]}`, answer)
	}))
	defer be.Close()

	data := t.TempDir()
	args := []string{"--backend", "openai:" + be.URL + "/v1", "--data", data}
	first, url := startDSO(t, args...)
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"What is the answer to everything?"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	trace := resp.Header.Get("X-DSO-Trace-Id")
	resp, err = http.Post(url+"/v1/feedback", "application/json", strings.NewReader(`{"trace_id":"`+trace+`","grade":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("feedback: %d", resp.StatusCode)
	}
	select {
	case <-distillAsked:
	case <-time.After(30 * time.Second):
		t.Fatal("the first dso never asked for a lesson")
	}
	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	first.Wait()

	answerDistill.Store(true)
	_, url = startDSO(t, args...)
	select {
	case <-distillAsked:
	case <-time.After(30 * time.Second):
		t.Fatal("the restarted dso never distilled the pending feedback")
	}
	// The lesson lands just after the model answers; there is no event to
	// wait on from outside the process, so look until a deadline.
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(url + "/v1/experiences")
		if err != nil {
			t.Fatal(err)
		}
		var list struct {
			Data []struct {
				Text    string `json:"text"`
				TraceID string `json:"trace_id"`
			}
		}
		json.NewDecoder(resp.Body).Decode(&list)
		resp.Body.Close()
		if len(list.Data) == 1 && strings.Contains(list.Data[0].Text, "forty-two") && list.Data[0].TraceID == trace {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no lesson after restart: %+v", list.Data)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
