package proxy_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/internal/testenv"
	"github.com/dso-proxy/dso/learn"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/proxy"
	"github.com/dso-proxy/dso/store"
)

// The dashboard's browser tests drive a real headless Chromium against dso
// in front of a fake OpenAI backend serving test embeddings, with a real
// library, learner and store, and an admin key guarding the library.

const uiAdminKey = "admin-key-for-the-dashboard-test"

// dashboard is the system under test and a browser tab on it.
type dashboard struct {
	fe      *frontend
	be      *backend
	lib     *library.Library
	tab     context.Context
	shots   string       // where screenshots go
	dialogs atomic.Int32 // JavaScript dialogs opened (alert, confirm, ...)

	mu         sync.Mutex // protects pageErrors
	pageErrors []string   // uncaught exceptions and console errors, CSP violations among them
}

// chromium returns the browser's path, or skips the test without one
// (see testenv.Skip).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testenv.Skip(t, testenv.Chromium, "no chromium found on PATH: the dashboard's browser tests need it (Debian: apt-get install chromium)")
	return ""
}

// newDashboard starts dso and a browser. Retirement needs two voters, so
// that a test sees votes add up from the page.
func newDashboard(t *testing.T, opts ...frontendOpt) *dashboard {
	exe := chromium(t)
	be := newBackend(t, "openai")
	textEmbeddings(t, be, nil)
	lib := newLibrary(t, t.TempDir(), openaiCfg(be))
	fe := newFrontend(t, []config.Backend{openaiCfg(be)}, withRetrieval(lib, 5*time.Second), func(o *proxy.Options, _ []config.Backend) {
		o.AdminKeys = []config.Secret{uiAdminKey}
		o.Learner = learn.NewLearner(learn.FeedbackConfig{Library: lib, MinVotes: 2})
	}, func(o *proxy.Options, cfgs []config.Backend) {
		for _, f := range opts {
			f(o, cfgs)
		}
	})

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1400, 1000))
	t.Cleanup(cancelAlloc)
	tab, cancelTab := chromedp.NewContext(alloc)
	t.Cleanup(cancelTab)
	tab, cancelTimeout := context.WithTimeout(tab, 3*time.Minute)
	t.Cleanup(cancelTimeout)
	d := &dashboard{fe: fe, be: be, lib: lib, tab: tab, shots: os.Getenv("DSO_UI_SCREENSHOTS")}
	if d.shots == "" {
		d.shots = t.TempDir()
	}
	if err := chromedp.Do(tab); err != nil { // starts the browser
		t.Fatalf("starting chromium: %v", err)
	}
	d.watchErrors()
	// Any dialog is counted, then dismissed so that the page goes on.
	go func() {
		for _, err := range chromedp.Events(tab, page.JavascriptDialogOpening) {
			if err != nil {
				return
			}
			d.dialogs.Add(1)
			_, _ = chromedp.Call(tab, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	return d
}

// watchErrors records the page's uncaught exceptions and console errors.
// Refused API calls log network errors (a 401 is one); those are left out.
func (d *dashboard) watchErrors() {
	add := func(msg string) {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.pageErrors = append(d.pageErrors, msg)
	}
	go func() {
		for ev, err := range chromedp.Events(d.tab, runtime.ExceptionThrown) {
			if err != nil {
				return
			}
			add("exception: " + ev.ExceptionDetails.Text + " " + ev.ExceptionDetails.URL)
		}
	}()
	go func() {
		for ev, err := range chromedp.Events(d.tab, cdplog.EntryAdded) {
			if err != nil {
				return
			}
			if e := ev.Entry; e.Level == cdplog.EntryLevelError && e.Source != cdplog.EntrySourceNetwork {
				add(string(e.Source) + ": " + e.Text)
			}
		}
	}()
}

// noPageErrors fails the test if the page threw or logged an error.
func (d *dashboard) noPageErrors(t *testing.T) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, e := range d.pageErrors {
		t.Errorf("page error: %s", e)
	}
	if n := d.dialogs.Load(); n != 0 {
		t.Errorf("%d dialogs opened; want none", n)
	}
}

// do runs browser steps, failing the test on error.
func (d *dashboard) do(t *testing.T, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(d.tab, steps...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

// open loads a dashboard page and waits until sel is visible.
func (d *dashboard) open(t *testing.T, path, sel string) {
	t.Helper()
	d.do(t, chromedp.Navigate(d.fe.URL+path), chromedp.WaitVisible(chromedp.CSS(sel)))
}

// useKey enters the admin key in the page's key form.
func (d *dashboard) useKey(t *testing.T, key string) {
	t.Helper()
	d.do(t, chromedp.SetValue(chromedp.CSS("#key-input"), key), chromedp.Click(chromedp.CSS("#key-save")),
		chromedp.Poll[chromedp.Void](`document.getElementById("key-state").textContent.startsWith("key set")`, chromedp.WithPollingTimeout(10*time.Second)))
}

// waitStatus waits until the page's status line starts with prefix and
// returns it.
func (d *dashboard) waitStatus(t *testing.T, prefix string) string {
	t.Helper()
	js, _ := json.Marshal(prefix)
	if err := chromedp.Do(d.tab, chromedp.Poll[chromedp.Void](`document.getElementById("status").textContent.startsWith(`+string(js)+`)`, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		got, _ := chromedp.Run(d.tab, chromedp.Text(chromedp.CSS("#status")))
		t.Fatalf("status line %q; want it to start with %q (%v)", got, prefix, err)
	}
	got, _ := chromedp.Run(d.tab, chromedp.Text(chromedp.CSS("#status")))
	return got
}

// shot saves a screenshot of the whole page.
func (d *dashboard) shot(t *testing.T, name string) {
	t.Helper()
	b, err := chromedp.Run(d.tab, chromedp.FullScreenshot(100)) // quality 100 is a PNG
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(d.shots, name+".png")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// eval evaluates a JavaScript expression in the page.
func evalIn[T any](t *testing.T, d *dashboard, expr string) T {
	t.Helper()
	v, err := chromedp.Run(d.tab, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// onlyExperience returns the one experience stored.
func onlyExperience(t *testing.T, lib *library.Library) store.Experience {
	t.Helper()
	es, _, err := lib.Store().ListExperiences(context.Background(), store.ListOptions{})
	if err != nil || len(es) != 1 {
		t.Fatalf("stored experiences: %d, %v; want 1", len(es), err)
	}
	return es[0]
}

// awaitTrace waits until the store has the trace: traces are written in
// the background, just after the answer, and the traces page lists what is
// stored when it loads.
func (d *dashboard) awaitTrace(t *testing.T, id string) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		if _, err := d.lib.Store().(*store.SQLite).GetTrace(context.Background(), id); err == nil {
			return
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("trace %s was not stored within 10s", id)
		}
	}
}

// An experience added on the library page is injected into a chat; the
// chat's trace shows on the traces page, where two voters grading it down
// retire the experience; every page renders.
func TestUIAddInjectGradeRetire(t *testing.T) {
	d := newDashboard(t)
	const lesson = "The capital city of Atlantis is Poseidonia."
	const question = "What is the capital city of Atlantis?"

	d.open(t, "/ui/library", "#add-form")
	d.useKey(t, uiAdminKey)
	d.do(t, chromedp.WaitVisible(chromedp.CSS("#exp-table")),
		chromedp.SetValue(chromedp.CSS("#add-text"), lesson), chromedp.Click(chromedp.CSS("#add-submit")))
	d.waitStatus(t, "Added ")
	e := onlyExperience(t, d.lib)
	if e.Text != lesson || e.Status != store.StatusActive {
		t.Fatalf("stored %+v; want the lesson, active", e)
	}
	d.do(t, chromedp.WaitVisible(chromedp.CSS(`tr[data-id="`+e.ID+`"]`)))

	code, hdr, body := post(t, d.fe.URL+"/v1/chat/completions", chatBody(question))
	if code != http.StatusOK {
		t.Fatalf("chat: %d %s", code, body)
	}
	if got := hdr.Get(proxy.HeaderExperiences); got != e.ID {
		t.Fatalf("%s = %q; want the experience added on the page, %s", proxy.HeaderExperiences, got, e.ID)
	}
	if sys := noteText(t, d.be.last(t).Body); !strings.Contains(sys, lesson) {
		t.Fatalf("the backend's system message %q lacks the lesson", sys)
	}
	traceID := hdr.Get(proxy.HeaderTraceID)

	// What retrieval would inject, from the search box.
	d.do(t, chromedp.SetValue(chromedp.CSS("#s-q"), question), chromedp.Click(chromedp.CSS(`#search-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#search-gate")))
	if got := evalIn[string](t, d, `document.getElementById("search-gate").textContent`); !strings.Contains(got, "1 of 1 would be injected") {
		t.Errorf("search says %q; want the lesson injected", got)
	}
	d.shot(t, "library")
	// At 1400 px the table fits inside its card's padding: Delete is not cut off.
	if !evalIn[bool](t, d, `(() => {
		const b = document.querySelector("#exp-table button.delete").getBoundingClientRect();
		const card = document.querySelector("#exp-table").closest(".card");
		return b.right <= card.getBoundingClientRect().right - parseFloat(getComputedStyle(card).paddingRight) + 0.5;
	})()`) {
		t.Errorf("the library table runs past its card at 1400 px")
	}

	gradeFromTracesPage(t, d, traceID, e.ID)

	d.open(t, "/ui/", "#chart-rps")
	if got := evalIn[string](t, d, `document.getElementById("summary").textContent`); !strings.Contains(got, "1requests") || !strings.Contains(got, "2grades") {
		t.Errorf("overview summary %q; want 1 request and 2 grades", got)
	}
	for _, id := range []string{"chart-latency", "chart-overhead", "chart-cache", "chart-retrieval", "chart-injected", "chart-library", "chart-feedback"} {
		if !evalIn[bool](t, d, `!!document.querySelector("#`+id+` svg")`) {
			t.Errorf("overview has no %s chart", id)
		}
	}
	d.shot(t, "overview")

	d.open(t, "/ui/network", "#network-none")
	d.shot(t, "network")
	d.noPageErrors(t)
}

// gradeFromTracesPage grades the trace down as two voters on the traces
// page and waits until the experience is retired.
func gradeFromTracesPage(t *testing.T, d *dashboard, traceID, expID string) {
	t.Helper()
	card := `#trace-` + traceID
	d.awaitTrace(t, traceID)
	d.open(t, "/ui/traces", card)
	if got := evalIn[string](t, d, `document.querySelector("`+card+` .injected a").getAttribute("href")`); got != "/ui/library?id="+expID {
		t.Errorf("the injected experience links to %q; want its library entry", got)
	}
	e, err := d.lib.Store().(*store.SQLite).GetExperience(context.Background(), expID)
	if err != nil {
		t.Fatal(err)
	}
	if got := evalIn[string](t, d, `document.querySelector("`+card+` .injected a").textContent`); got != e.Text {
		t.Errorf("the trace shows the injected experience as %q; want its text %q", got, e.Text)
	}
	for _, voter := range []string{"alice", "bob"} {
		d.do(t, chromedp.SetValue(chromedp.CSS("#voter"), voter), chromedp.Click(chromedp.CSS(card+" button.bad")))
		d.waitStatus(t, "Recorded grade 0 as name:"+voter+" for "+traceID)
	}
	d.shot(t, "traces")
	// Feedback is recorded before POST /v1/feedback answers, so the
	// experience is retired by the time the page says so.
	if e, err := d.lib.Store().(*store.SQLite).GetExperience(context.Background(), expID); err != nil || e.Status != store.StatusRetired {
		t.Fatalf("after two down-votes the experience is %+v (%v); want retired", e, err)
	}
	// The library page shows it retired, with its votes.
	d.open(t, "/ui/library?id="+expID, `tr[data-id="`+expID+`"]`)
	if got := evalIn[string](t, d, `document.querySelector('tr[data-id="`+expID+`"]').textContent`); !strings.Contains(got, "retired") || !strings.Contains(got, "0 up / 2 down") {
		t.Errorf("library row %q; want retired with 0 up / 2 down", got)
	}
}

// payload is experience text that would run script if it were ever
// inserted as HTML.
const payload = `<img src=x onerror="document.body.dataset.pwned=1"><script>alert("pwned")</script><b id="injected-node">bold</b>`

// Experience text and trace questions are untrusted: the pages show them
// as text and run nothing.
func TestUIShowsUntrustedTextAsText(t *testing.T) {
	d := newDashboard(t)
	b, _ := json.Marshal(map[string]any{"text": payload, "domain": "xss"})
	code, _, body := post(t, d.fe.URL+"/v1/experiences", string(b), "Authorization", "Bearer "+uiAdminKey)
	if code != http.StatusCreated {
		t.Fatalf("add: %d %s", code, body)
	}
	code, hdr, body := post(t, d.fe.URL+"/v1/chat/completions", chatBody(payload))
	if code != http.StatusOK {
		t.Fatalf("chat: %d %s", code, body)
	}
	d.awaitTrace(t, hdr.Get(proxy.HeaderTraceID))
	d.open(t, "/ui/library", "#key-form")
	d.useKey(t, uiAdminKey)
	d.do(t, chromedp.WaitVisible(chromedp.CSS("#exp-table .exp-text")))
	noneRan := func(where string) {
		if got := evalIn[string](t, d, `document.querySelector("`+where+`").textContent`); !strings.Contains(got, payload) {
			t.Errorf("%s shows %q; want the literal payload", where, got)
		}
		if evalIn[bool](t, d, `!!document.querySelector("#injected-node, img, script:not([src])") || "pwned" in document.body.dataset`) {
			t.Errorf("%s: the payload became markup or ran", where)
		}
	}
	noneRan("#exp-table .exp-text")
	d.shot(t, "library-untrusted")
	d.open(t, "/ui/traces", ".trace .question")
	noneRan(".trace .question")
	d.noPageErrors(t) // a CSP violation, had markup been inserted, is one
}

// Without the admin key the page's writes are refused, as the API refuses
// them, and nothing changes.
func TestUIWritesRefusedWithoutKey(t *testing.T) {
	d := newDashboard(t)
	d.open(t, "/ui/library", "#add-form")
	d.waitStatus(t, "Could not list experiences: missing or invalid API key")
	if !evalIn[bool](t, d, `!document.getElementById("key-input").hidden`) {
		t.Errorf("the key box is hidden where the API asks for a key")
	}
	d.do(t, chromedp.SetValue(chromedp.CSS("#add-text"), "Lessons need a key."), chromedp.Click(chromedp.CSS("#add-submit")))
	d.waitStatus(t, "Add refused: missing or invalid API key")
	if n := d.lib.Len(); n != 0 {
		t.Fatalf("%d experiences after a refused add; want 0", n)
	}

	// With a wrong key too; then with the right key, a listing with a
	// delete button, used after forgetting the key.
	d.useKey(t, "not-the-key")
	d.waitStatus(t, "Could not list experiences")
	d.do(t, chromedp.Click(chromedp.CSS("#add-submit")))
	d.waitStatus(t, "Add refused: missing or invalid API key")
	b, _ := json.Marshal(map[string]any{"text": "Keep me."})
	if code, _, body := post(t, d.fe.URL+"/v1/experiences", string(b), "Authorization", "Bearer "+uiAdminKey); code != http.StatusCreated {
		t.Fatalf("add: %d %s", code, body)
	}
	d.useKey(t, uiAdminKey)
	d.do(t, chromedp.WaitVisible(chromedp.CSS("#exp-table button.delete")), chromedp.Click(chromedp.CSS("#key-forget")))
	d.waitStatus(t, "Could not list experiences")
	d.do(t, chromedp.Click(chromedp.CSS("#exp-table button.delete")), chromedp.Click(chromedp.CSS("#exp-table button.delete")))
	d.waitStatus(t, "Delete refused: missing or invalid API key")
	d.do(t, chromedp.Click(chromedp.CSS("#exp-table button.retire")))
	d.waitStatus(t, "Retire refused: missing or invalid API key")
	if e := onlyExperience(t, d.lib); e.Status != store.StatusActive {
		t.Fatalf("experience %s after refused writes; want active", e.Status)
	}
	d.noPageErrors(t)
}

// Where the API answers without a key (dso on loopback with no keys), the
// page shows no key box, only that none is needed.
func TestUIKeyBoxOnlyWhereAKeyIsAsked(t *testing.T) {
	d := newDashboard(t, func(o *proxy.Options, _ []config.Backend) { o.AdminKeys = nil })
	d.open(t, "/ui/", "#key-state")
	d.do(t, chromedp.Poll[chromedp.Void](`document.getElementById("key-state").textContent === "no key needed here"`, chromedp.WithPollingTimeout(10*time.Second)))
	if evalIn[bool](t, d, `!document.getElementById("key-input").hidden || !document.getElementById("key-save").hidden`) {
		t.Errorf("the key box is shown where no key is needed")
	}
	d.noPageErrors(t)
}
