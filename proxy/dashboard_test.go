package proxy_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/learn"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/proxy"
	"github.com/dso-proxy/dso/store"
)

// dashboardAPI is dso with a library, a learner and an admin key, for the
// JSON endpoints the dashboard calls.
func dashboardAPI(t *testing.T) (*frontend, *library.Library) {
	t.Helper()
	be := newBackend(t, "openai")
	textEmbeddings(t, be, nil)
	lib := newLibrary(t, t.TempDir(), openaiCfg(be))
	fe := newFrontend(t, []config.Backend{openaiCfg(be)}, withRetrieval(lib, 5*time.Second), func(o *proxy.Options, _ []config.Backend) {
		o.AdminKeys = []config.Secret{uiAdminKey}
		o.Learner = learn.NewLearner(learn.FeedbackConfig{Library: lib})
	})
	return fe, lib
}

type statsJSON struct {
	Interval int `json:"interval_seconds"`
	Library  int `json:"library"`
	Buckets  []struct {
		Requests  int            `json:"requests"`
		P50       float64        `json:"latency_p50_ms"`
		Retrieval map[string]int `json:"retrieval"`
		Injected  int            `json:"injected_experiences"`
		Library   *int           `json:"library"`
	} `json:"buckets"`
}

var adminAuth = []string{"Authorization", "Bearer " + uiAdminKey}

func decode[T any](t *testing.T, body []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
	return v
}

// GET /v1/stats counts what the chats did, under the admin key.
func TestStatsEndpoint(t *testing.T) {
	fe, _ := dashboardAPI(t)
	b, _ := json.Marshal(map[string]any{"text": "The capital city of Atlantis is Poseidonia."})
	if code, _, body := post(t, fe.URL+"/v1/experiences", string(b), adminAuth...); code != http.StatusCreated {
		t.Fatalf("add: %d %s", code, body)
	}
	for range 3 {
		if code, _, body := post(t, fe.URL+"/v1/chat/completions", chatBody("What is the capital city of Atlantis?")); code != 200 {
			t.Fatalf("chat: %d %s", code, body)
		}
	}
	if code, _, _ := send(t, http.MethodGet, fe.URL+"/v1/stats", ""); code != http.StatusUnauthorized {
		t.Fatalf("stats without the key: %d; want 401", code)
	}
	// A request is counted as its handler returns, which may be just
	// after the client has the whole answer: poll until all three are.
	var (
		body                         []byte
		st                           statsJSON
		requests, injected, outcomes int
	)
	for deadline := time.Now().Add(5 * time.Second); ; {
		var code int
		code, _, body = send(t, http.MethodGet, fe.URL+"/v1/stats", "", adminAuth...)
		if code != 200 {
			t.Fatalf("stats: %d %s", code, body)
		}
		st = decode[statsJSON](t, body)
		requests, injected, outcomes = 0, 0, 0
		for _, b := range st.Buckets {
			requests += b.Requests
			injected += b.Injected
			outcomes += b.Retrieval["injected"]
			if b.Requests > 0 && b.P50 <= 0 {
				t.Errorf("bucket with %d requests has p50 %v", b.Requests, b.P50)
			}
		}
		if requests >= 3 || time.Now().After(deadline) {
			break
		}
	}
	if st.Interval != 10 || st.Library != 1 || requests != 3 || injected != 3 || outcomes != 3 {
		t.Errorf("stats: interval %d, library %d, %d requests, %d injected in %d chats; want 10, 1, 3, 3, 3\n%s",
			st.Interval, st.Library, requests, injected, outcomes, body)
	}
	if code, _, _ := send(t, http.MethodGet, fe.URL+"/v1/stats?window=0", "", adminAuth...); code != http.StatusBadRequest {
		t.Errorf("window=0: %d; want 400", code)
	}
}

// GET /v1/traces pages the traces newest first, with their grades, under
// the admin key.
func TestTracesEndpoint(t *testing.T) {
	fe, _ := dashboardAPI(t)
	var ids []string
	for i := range 3 {
		code, hdr, body := post(t, fe.URL+"/v1/chat/completions", chatBody(fmt.Sprint("question ", i)))
		if code != 200 {
			t.Fatalf("chat: %d %s", code, body)
		}
		ids = append(ids, hdr.Get(proxy.HeaderTraceID))
	}
	fb, _ := json.Marshal(map[string]any{"trace_id": ids[2], "grade": 0.25})
	if code, _, body := post(t, fe.URL+"/v1/feedback", string(fb)); code != 200 {
		t.Fatalf("feedback: %d %s", code, body)
	}
	if code, _, _ := send(t, http.MethodGet, fe.URL+"/v1/traces", ""); code != http.StatusUnauthorized {
		t.Fatalf("traces without the key: %d; want 401", code)
	}
	type page struct {
		Data []struct {
			ID, Query, Answer string
			Grades            int
			Grade             *float64
		}
		HasMore bool   `json:"has_more"`
		Next    string `json:"next"`
	}
	code, _, body := send(t, http.MethodGet, fe.URL+"/v1/traces?limit=2", "", adminAuth...)
	if code != 200 {
		t.Fatalf("traces: %d %s", code, body)
	}
	p := decode[page](t, body)
	if len(p.Data) != 2 || p.Data[0].ID != ids[2] || p.Data[1].ID != ids[1] || !p.HasMore || p.Next == "" {
		t.Fatalf("first page %s; want the two newest, %s and %s, and a cursor", body, ids[2], ids[1])
	}
	if d := p.Data[0]; d.Query != "question 2" || d.Answer == "" || d.Grades != 1 || d.Grade == nil || *d.Grade != 0.25 {
		t.Errorf("newest trace %+v; want its question, answer and the one grade 0.25", d)
	}
	code, _, body = send(t, http.MethodGet, fe.URL+"/v1/traces?limit=2&before="+p.Next, "", adminAuth...)
	if p := decode[page](t, body); code != 200 || len(p.Data) != 1 || p.Data[0].ID != ids[0] || p.HasMore {
		t.Fatalf("second page: %d %s; want the oldest, %s, and no more", code, body, ids[0])
	}
	for _, q := range []string{"limit=0", "limit=201", "before=nonsense"} {
		code, _, body := send(t, http.MethodGet, fe.URL+"/v1/traces?"+q, "", adminAuth...)
		if code != http.StatusBadRequest || !strings.Contains(string(body), `"error"`) {
			t.Errorf("%s: %d %s; want 400 with an error", q, code, body)
		}
	}
}

// PATCH /v1/experiences/{id} retires and revives; the votes come with a
// listing on request.
func TestPatchExperienceAndVotes(t *testing.T) {
	fe, lib := dashboardAPI(t)
	b, _ := json.Marshal(map[string]any{"text": "Retire me when asked."})
	_, _, body := post(t, fe.URL+"/v1/experiences", string(b), adminAuth...)
	id := decode[struct{ ID string }](t, body).ID
	url := fe.URL + "/v1/experiences/" + id
	if code, _, _ := send(t, http.MethodPatch, url, `{"status":"retired"}`); code != http.StatusUnauthorized {
		t.Fatalf("patch without the key: %d; want 401", code)
	}
	code, _, body := send(t, http.MethodPatch, url, `{"status":"retired","confidence":0.2}`, adminAuth...)
	if e := decode[struct {
		Status     string
		Confidence float64
	}](t, body); code != 200 || e.Status != "retired" || e.Confidence != 0.2 {
		t.Fatalf("patch: %d %s; want retired at 0.2", code, body)
	}
	if e, err := lib.Store().(*store.SQLite).GetExperience(t.Context(), id); err != nil || e.Status != "retired" {
		t.Fatalf("stored: %+v %v; want retired", e, err)
	}
	for _, bad := range []string{`{}`, `{"status":"gone"}`, `{"confidence":2}`, `not json`} {
		if code, _, body := send(t, http.MethodPatch, url, bad, adminAuth...); code != http.StatusBadRequest {
			t.Errorf("patch %s: %d %s; want 400", bad, code, body)
		}
	}
	if code, _, _ := send(t, http.MethodPatch, fe.URL+"/v1/experiences/nope", `{"status":"active"}`, adminAuth...); code != http.StatusNotFound {
		t.Errorf("patch of an unknown id: %d; want 404", code)
	}
	code, _, body = send(t, http.MethodGet, fe.URL+"/v1/experiences?include=votes", "", adminAuth...)
	if !strings.Contains(string(body), `"votes":{"up":0,"down":0}`) || code != 200 {
		t.Errorf("list with votes: %d %s", code, body)
	}
}

// Writes from another origin's page are refused; the same origin and
// programs (no Origin, no Sec-Fetch-Site) are not.
func TestUICrossOriginWritesRefused(t *testing.T) {
	fe, lib := dashboardAPI(t)
	b, _ := json.Marshal(map[string]any{"text": "Posted from somewhere."})
	for _, hdr := range [][]string{
		{"Sec-Fetch-Site", "cross-site"},
		{"Origin", "http://attacker.example"},
	} {
		code, _, body := post(t, fe.URL+"/v1/experiences", string(b), append(hdr, adminAuth...)...)
		if code != http.StatusForbidden || !strings.Contains(string(body), `"code":"cross_origin"`) {
			t.Errorf("%s: %d %s; want 403 cross_origin", hdr[0], code, body)
		}
		code, _, body = post(t, fe.URL+"/v1/feedback", `{"trace_id":"tr_x","grade":1}`, hdr...)
		if code != http.StatusForbidden {
			t.Errorf("feedback with %s: %d %s; want 403", hdr[0], code, body)
		}
	}
	if lib.Len() != 0 {
		t.Fatalf("%d experiences after refused writes; want 0", lib.Len())
	}
	if code, _, body := post(t, fe.URL+"/v1/experiences", string(b), append([]string{"Sec-Fetch-Site", "same-origin"}, adminAuth...)...); code != http.StatusCreated {
		t.Fatalf("same-origin add: %d %s; want 201", code, body)
	}
	if code, _, body := post(t, fe.URL+"/v1/experiences", `{"text":"From a program."}`, adminAuth...); code != http.StatusCreated {
		t.Fatalf("add from a program: %d %s; want 201", code, body)
	}
}
