package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/dso-proxy/dso/internal/testenv"
)

// The dashboard's network page, in a real headless Chromium, on real dso
// nodes: one that follows A without trusting it shows A's log with the
// record quarantined (its HTML shown as text, nothing run), one that
// follows A through a tampering proxy shows the log dropped and the
// refusals by reason. Screenshots go to the test's temp dir (or
// DSO_UI_SCREENSHOTS).
func TestUINetworkPage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts dso processes and a browser")
	}
	exe := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			exe = p
			break
		}
	}
	if exe == "" {
		testenv.Skip(t, testenv.Chromium, "no chromium found on PATH: the dashboard's browser tests need it (Debian: apt-get install chromium)")
	}
	backend := httptest.NewServer(&recordingBackend{})
	defer backend.Close()
	a := startNetNode(t, "nodeA", backend.URL, "code")
	q := startNetNode(t, "nodeQ", backend.URL, "", fmt.Sprintf("{url: %q, key: %q, quarantine: true}", a.url, a.key))
	tamper := httptest.NewServer(tamperingProxy(a.url))
	defer tamper.Close()
	e := startNetNode(t, "nodeE", backend.URL, "", peerOf(tamper.URL, a.key))

	payload := `<img src=x onerror="window.pwned=1">Close what you open.<script>window.pwned=1</script>`
	resp, err := http.Post(a.url+"/v1/experiences", "application/json", strings.NewReader(fmt.Sprintf(`{"text":%q,"domain":"code","confidence":0.9}`, payload)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	pollUntil(t, 60*time.Second, "Q quarantines A's record and E refuses A's tampered log", func() bool {
		sq, ok1 := networkOf(t, q)
		se, ok2 := networkOf(t, e)
		return ok1 && ok2 && sq.Networks[0].Quarantined == 1 && len(se.Networks[0].Logs) == 1 && se.Networks[0].Logs[0].Rejected["bad_entry"] > 0
	})

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1400, 900))
	defer cancelAlloc()
	tab, cancelTab := chromedp.NewContext(alloc)
	defer cancelTab()
	tab, cancel := context.WithTimeout(tab, 2*time.Minute)
	defer cancel()
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	var mu sync.Mutex
	var pageErrors []string
	go func() {
		for ev, err := range chromedp.Events(tab, runtime.ExceptionThrown) {
			if err != nil {
				return
			}
			mu.Lock()
			pageErrors = append(pageErrors, ev.ExceptionDetails.Text)
			mu.Unlock()
		}
	}()
	go func() {
		for _, err := range chromedp.Events(tab, page.JavascriptDialogOpening) {
			if err != nil {
				return
			}
			mu.Lock()
			pageErrors = append(pageErrors, "a dialog opened")
			mu.Unlock()
			_, _ = chromedp.Call(tab, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{})
		}
	}()
	shots := os.Getenv("DSO_UI_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	open := func(n netNode, sel string) {
		t.Helper()
		if err := chromedp.Do(tab, chromedp.Navigate(n.url+"/ui/network"), chromedp.WaitVisible(chromedp.CSS(sel))); err != nil {
			t.Fatalf("%s's network page: %v", n.name, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	shot := func(name string) {
		t.Helper()
		b, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(shots, name+".png")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}

	open(q, "tr.quarantine-row")
	if row := text("#logs tr.log-row"); !strings.Contains(row, "nodeA") || !strings.Contains(row, "quarantined") || !strings.Contains(row, "quarantined 1") {
		t.Errorf("Q's followed log row %q; want nodeA, untrusted, one record quarantined", row)
	}
	if got := text("tr.quarantine-row td.text"); got != payload {
		t.Errorf("quarantined text shown as %q; want the literal %q", got, payload)
	}
	if pwned, _ := chromedp.Run(tab, chromedp.Evaluate[bool](`!!window.pwned || !!document.querySelector("tr.quarantine-row img, tr.quarantine-row script")`)); pwned {
		t.Error("the quarantined record's markup was rendered or run")
	}
	shot("network-quarantine")

	open(e, "#logs tr.log-row")
	if got := text("#logs tr.log-row td.trust"); got != "trusted, weight 1.00" {
		t.Errorf("E's log's trust shown as %q; want a configured peer's full weight", got)
	}
	if row := text("#logs tr.log-row"); !strings.Contains(row, "bad_entry") {
		t.Errorf("E's followed log row %q; want its refusals by reason (bad_entry)", row)
	}
	pollUntil(t, 30*time.Second, "E drops the tampering peer", func() bool {
		se, ok := networkOf(t, e)
		return ok && se.Networks[0].Logs[0].State == "dropped"
	})
	open(e, `#logs tr.log-row[data-state="dropped"]`)
	shot("network-dropped")
	mu.Lock()
	defer mu.Unlock()
	for _, pe := range pageErrors {
		t.Errorf("page error: %s", pe)
	}
}
