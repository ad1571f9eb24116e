package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a Clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex // protects t
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func openTest(t testing.TB, path string, opts Options) *SQLite {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "data", FileName)
	}
	s, err := Open(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func code(b byte) []byte {
	c := make([]byte, CodeSize)
	for i := range c {
		c[i] = b + byte(i)
	}
	return c
}

func TestExperienceID(t *testing.T) {
	base := ExperienceID("code/go", "Check errors.")
	tests := []struct {
		name         string
		domain, text string
		same         bool
	}{
		{"identical", "code/go", "Check errors.", true},
		{"domain case and space", "  Code/Go ", "Check errors.", true},
		{"text whitespace", "code/go", "  Check   errors.\r\n\n", true},
		{"tabs", "code/go", "Check\terrors.", true},
		{"other text", "code/go", "Check errors!", false},
		{"other domain", "code/rust", "Check errors.", false},
		{"no domain", "", "Check errors.", false},
		{"text case matters", "code/go", "check errors.", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ExperienceID(tt.domain, tt.text)
			if (got == base) != tt.same {
				t.Errorf("ExperienceID(%q, %q) = %s; same as base = %v, want %v", tt.domain, tt.text, got, got == base, tt.same)
			}
			if len(got) != 64 {
				t.Errorf("len = %d; want 64", len(got))
			}
		})
	}
	// Length prefixes keep the split between domain and text unambiguous.
	if ExperienceID("a", "bc") == ExperienceID("ab", "c") {
		t.Error("ExperienceID is ambiguous across the domain/text boundary")
	}
	// The encoding is part of the network protocol: pin it.
	const want = "dbbe470a0c484059343a82a92843e319678c3e5f2165dabec036b2389b8adc78"
	if got := ExperienceID("code/go", "Check errors."); got != want {
		t.Errorf("ExperienceID changed: got %s; want %s", got, want)
	}
}

func TestNormalizeText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"  a  ", "a"},
		{"a\r\nb", "a\nb"},
		{"a\rb", "a\nb"},
		{"a \t b", "a b"},
		{"a\n\n\n\nb", "a\n\nb"},
		{"a  \n  b", "a\nb"},
		{"\n\na\n\n", "a"},
		{"bad\xffutf8", "bad\uFFFDutf8"},
		{"nbsp\u00a0here", "nbsp here"},
	}
	for _, tt := range tests {
		if got := NormalizeText(tt.in); got != tt.want {
			t.Errorf("NormalizeText(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzNormalizeText(f *testing.F) {
	for _, s := range []string{"", "  a  ", "a\r\n\r\nb", "x\t\ty", "bad\xff", "\u2028\u00a0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := NormalizeText(s)
		if n2 := NormalizeText(n); n2 != n {
			t.Fatalf("not idempotent: %q -> %q -> %q", s, n, n2)
		}
		if strings.TrimSpace(n) != n || strings.Contains(n, "\n\n\n") || strings.Contains(n, "\r") {
			t.Fatalf("not normal: %q", n)
		}
		if ExperienceID("d", s) != ExperienceID("d", n) {
			t.Fatalf("id differs for normalised text")
		}
	})
}

func TestPutExperienceDuplicate(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	s := openTest(t, "", Options{Clock: clk})
	e := Experience{Text: "Prefer table-driven tests.", Domain: "Code/Go", Confidence: 0.7,
		SourceModel: "gpt-4o", SourceNode: "node-a", TraceID: "tr-1", Code: code(1), Space: "hash:8"}
	first, created, err := s.PutExperience(ctx, e)
	if err != nil || !created {
		t.Fatalf("PutExperience = %v, %v; want created", created, err)
	}
	if first.ID != ExperienceID("code/go", e.Text) || first.Domain != "code/go" || first.Status != StatusActive {
		t.Errorf("first = %+v", first)
	}
	if !first.CreatedAt.Equal(clk.Now()) {
		t.Errorf("CreatedAt = %v; want %v", first.CreatedAt, clk.Now())
	}
	clk.Advance(time.Hour)
	dup := e
	dup.Text = "  Prefer   table-driven tests.\n"
	dup.Confidence = 0.1
	again, created, err := s.PutExperience(ctx, dup)
	if err != nil || created {
		t.Fatalf("duplicate PutExperience = %v, %v; want not created", created, err)
	}
	if again.ID != first.ID || again.Confidence != 0.7 || !again.CreatedAt.Equal(first.CreatedAt) {
		t.Errorf("duplicate returned %+v; want the stored record %+v", again, first)
	}
	page, _, err := s.ListExperiences(ctx, ListOptions{})
	if err != nil || len(page) != 1 {
		t.Fatalf("ListExperiences = %d rows, %v; want 1", len(page), err)
	}
	got, err := s.GetExperience(ctx, first.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !equalExp(got, first) {
		t.Errorf("GetExperience = %+v; want %+v", got, first)
	}
}

func equalExp(a, b Experience) bool {
	return a.ID == b.ID && a.Text == b.Text && a.Domain == b.Domain && a.Confidence == b.Confidence &&
		a.Status == b.Status && a.SourceModel == b.SourceModel && a.SourceNode == b.SourceNode &&
		a.TraceID == b.TraceID && slices.Equal(a.Code, b.Code) && a.CreatedAt.Equal(b.CreatedAt) &&
		a.UpdatedAt.Equal(b.UpdatedAt)
}

func TestPutExperienceInvalid(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", Options{})
	ok := Experience{Text: "t", Confidence: 0.5}
	tests := []struct {
		name string
		mod  func(*Experience)
		msg  string
	}{
		{"empty text", func(e *Experience) { e.Text = "" }, "empty text"},
		{"blank text", func(e *Experience) { e.Text = " \n\t " }, "empty text"},
		{"confidence high", func(e *Experience) { e.Confidence = 1.01 }, "confidence"},
		{"confidence negative", func(e *Experience) { e.Confidence = -0.1 }, "confidence"},
		{"confidence NaN", func(e *Experience) { e.Confidence = math.NaN() }, "confidence"},
		{"short code", func(e *Experience) { e.Code = make([]byte, 480) }, "code is 480 bytes"},
		{"long code", func(e *Experience) { e.Code = make([]byte, 485) }, "code is 485 bytes"},
		{"bad status", func(e *Experience) { e.Status = "deleted" }, "status"},
		{"wrong id", func(e *Experience) { e.ID = strings.Repeat("0", 64) }, "content hash"},
		{"huge text", func(e *Experience) { e.Text = strings.Repeat("x", MaxTextBytes+1) }, "text is"},
		{"huge domain", func(e *Experience) { e.Domain = strings.Repeat("d", MaxDomainBytes+1) }, "domain is"},
		{"huge model", func(e *Experience) { e.SourceModel = strings.Repeat("m", MaxFieldBytes+1) }, "source model"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := ok
			tt.mod(&e)
			_, _, err := s.PutExperience(ctx, e)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %v; want ErrInvalid mentioning %q", err, tt.msg)
			}
		})
	}
	page, _, err := s.ListExperiences(ctx, ListOptions{})
	if err != nil || len(page) != 0 {
		t.Errorf("after invalid puts: %d rows, %v; want none", len(page), err)
	}
	// The valid baseline is accepted, with and without a matching ID.
	e := ok
	e.ID = ExperienceID("", "t")
	if _, created, err := s.PutExperience(ctx, e); err != nil || !created {
		t.Errorf("valid put = %v, %v", created, err)
	}
}

func seed(t testing.TB, s *SQLite, n int, domain string) []Experience {
	t.Helper()
	out := make([]Experience, n)
	for i := range out {
		e, _, err := s.PutExperience(context.Background(), Experience{
			Text: fmt.Sprintf("lesson %d in %s", i, domain), Domain: domain, Confidence: 0.5, Code: code(byte(i)), Space: "hash:8",
		})
		if err != nil {
			t.Fatal(err)
		}
		out[i] = e
	}
	return out
}

func TestGetExperiences(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", Options{})
	es := seed(t, s, 5, "math")
	ids := []string{es[3].ID, "missing", es[0].ID, es[3].ID, es[4].ID}
	got, err := s.GetExperiences(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	var gotIDs []string
	for _, e := range got {
		gotIDs = append(gotIDs, e.ID)
	}
	want := []string{es[3].ID, es[0].ID, es[4].ID}
	if !slices.Equal(gotIDs, want) {
		t.Errorf("ids = %v; want %v", gotIDs, want)
	}
	if !equalExp(got[0], es[3]) {
		t.Errorf("got[0] = %+v; want %+v", got[0], es[3])
	}
	if got, err := s.GetExperiences(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("GetExperiences(nil) = %v, %v", got, err)
	}
	// More ids than one batch.
	many := make([]string, 0, 1200)
	for i := range 1200 {
		many = append(many, fmt.Sprint("nope", i))
	}
	many = append(many, es[1].ID)
	if got, err := s.GetExperiences(ctx, many); err != nil || len(got) != 1 || got[0].ID != es[1].ID {
		t.Errorf("GetExperiences(1201 ids) = %d, %v", len(got), err)
	}
	if _, err := s.GetExperience(ctx, "missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetExperience(missing) err = %v; want ErrNotFound", err)
	}
}

func TestListExperiencesPaging(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", Options{})
	goES := seed(t, s, 7, "code/go")
	seed(t, s, 3, "code")
	seed(t, s, 4, "cooking")
	seed(t, s, 2, "codex") // byte prefix "code" matches this too
	retired := StatusRetired
	if _, err := s.UpdateExperience(ctx, goES[0].ID, Update{Status: &retired}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts ListOptions
		want int
	}{
		{"all", ListOptions{Limit: 3}, 16},
		{"prefix", ListOptions{DomainPrefix: "code", Limit: 4}, 12},
		{"prefix case", ListOptions{DomainPrefix: "CODE/", Limit: 2}, 7},
		{"active go", ListOptions{DomainPrefix: "code/go", Status: StatusActive, Limit: 2}, 6},
		{"retired", ListOptions{Status: StatusRetired}, 1},
		{"none", ListOptions{DomainPrefix: "zzz"}, 0},
		{"exact page", ListOptions{DomainPrefix: "cooking", Limit: 4}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var all []string
			opts := tt.opts
			for pages := 0; ; pages++ {
				if pages > 20 {
					t.Fatal("paging does not end")
				}
				page, next, err := s.ListExperiences(ctx, opts)
				if err != nil {
					t.Fatal(err)
				}
				if opts.Limit > 0 && len(page) > opts.Limit {
					t.Fatalf("page of %d > limit %d", len(page), opts.Limit)
				}
				for _, e := range page {
					all = append(all, e.ID)
				}
				if next == "" {
					break
				}
				opts.After = next
			}
			if len(all) != tt.want {
				t.Errorf("listed %d; want %d", len(all), tt.want)
			}
			if !slices.IsSorted(all) || len(slices.Compact(slices.Clone(all))) != len(all) {
				t.Errorf("ids not strictly ordered: %v", all)
			}
		})
	}
	if _, _, err := s.ListExperiences(ctx, ListOptions{Status: "gone"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad status err = %v; want ErrInvalid", err)
	}
}

func TestUpdateDeleteExperience(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	s := openTest(t, "", Options{Clock: clk})
	e := seed(t, s, 1, "x")[0]
	clk.Advance(time.Minute)
	conf, retired := 0.9, StatusRetired
	got, err := s.UpdateExperience(ctx, e.ID, Update{Confidence: &conf, Status: &retired, Code: []byte{}})
	if err != nil {
		t.Fatal(err)
	}
	if got.Confidence != 0.9 || got.Status != StatusRetired || got.Code != nil ||
		!got.UpdatedAt.Equal(clk.Now()) || !got.CreatedAt.Equal(e.CreatedAt) || got.Text != e.Text {
		t.Errorf("updated = %+v", got)
	}
	bad := 2.0
	if _, err := s.UpdateExperience(ctx, e.ID, Update{Confidence: &bad}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad update err = %v; want ErrInvalid", err)
	}
	if _, err := s.UpdateExperience(ctx, e.ID, Update{Code: []byte{1}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad code err = %v; want ErrInvalid", err)
	}
	if _, err := s.UpdateExperience(ctx, "nope", Update{Confidence: &conf}); !errors.Is(err, ErrNotFound) {
		t.Errorf("update missing err = %v; want ErrNotFound", err)
	}
	if err := s.PutVote(ctx, Vote{ExperienceID: e.ID, Voter: "v", Up: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteExperience(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteExperience(ctx, e.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete err = %v; want ErrNotFound", err)
	}
	if _, err := s.GetExperience(ctx, e.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("get deleted err = %v; want ErrNotFound", err)
	}
	if vs, err := s.Votes(ctx, e.ID); err != nil || len(vs) != 0 {
		t.Errorf("votes of deleted = %v, %v; want none (cascade)", vs, err)
	}
}

func TestVotes(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	s := openTest(t, "", Options{Clock: clk})
	e := seed(t, s, 1, "x")[0]
	put := func(voter, trace string, up bool) {
		t.Helper()
		clk.Advance(time.Second)
		if err := s.PutVote(ctx, Vote{ExperienceID: e.ID, Voter: voter, TraceID: trace, Up: up}); err != nil {
			t.Fatal(err)
		}
	}
	put("alice", "t1", true)
	put("bob", "t1", true)
	put("carol", "t2", false)
	put("bob", "t1", false)  // regrade: replaces
	put("alice", "t3", true) // same voter, other trace: counted once
	vs, err := s.Votes(ctx, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 4 {
		t.Errorf("len(votes) = %d; want 4 (regrade replaced): %+v", len(vs), vs)
	}
	tally, err := s.Tally(ctx, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Tally{Up: 1, Down: 2}); tally != want {
		t.Errorf("Tally = %+v; want %+v", tally, want)
	}
	// alice changes her mind through a new trace: her latest vote counts.
	put("alice", "t4", false)
	if tally, _ := s.Tally(ctx, e.ID); tally != (Tally{Up: 0, Down: 3}) {
		t.Errorf("Tally after alice's down = %+v; want {0 3}", tally)
	}
	if tally, err := s.Tally(ctx, "none"); err != nil || tally != (Tally{}) {
		t.Errorf("Tally(none) = %+v, %v", tally, err)
	}
	if err := s.PutVote(ctx, Vote{ExperienceID: "none", Voter: "v"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("vote on missing err = %v; want ErrNotFound", err)
	}
	if err := s.PutVote(ctx, Vote{ExperienceID: e.ID}); !errors.Is(err, ErrInvalid) {
		t.Errorf("vote without voter err = %v; want ErrInvalid", err)
	}
}

func TestTraces(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	s := openTest(t, "", Options{Clock: clk, MaxTraces: 3, TraceMaxAge: time.Hour})
	tr := Trace{ID: "t0", Query: "q", Domain: "d", ExperienceIDs: []string{"a", "b"}, Model: "m", Answer: "ans"}
	if err := s.PutTrace(ctx, tr); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetTrace(ctx, "t0")
	if err != nil {
		t.Fatal(err)
	}
	if got.Query != "q" || got.Answer != "ans" || !slices.Equal(got.ExperienceIDs, tr.ExperienceIDs) ||
		!got.CreatedAt.Equal(clk.Now()) || got.Model != "m" || got.Domain != "d" {
		t.Errorf("GetTrace = %+v", got)
	}
	// Re-putting replaces (answer recorded later).
	tr.Answer = "final"
	if err := s.PutTrace(ctx, tr); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetTrace(ctx, "t0"); got.Answer != "final" {
		t.Errorf("answer = %q; want final", got.Answer)
	}
	// Count limit: oldest go first.
	for i := 1; i <= 4; i++ {
		clk.Advance(time.Minute)
		if err := s.PutTrace(ctx, Trace{ID: fmt.Sprint("t", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := s.CountTraces(ctx); n != 3 {
		t.Errorf("count = %d; want 3", n)
	}
	for _, id := range []string{"t0", "t1"} {
		if _, err := s.GetTrace(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetTrace(%s) err = %v; want pruned", id, err)
		}
	}
	if got, err := s.GetTrace(ctx, "t4"); err != nil || got.ExperienceIDs == nil {
		t.Errorf("GetTrace(t4) = %+v, %v", got, err)
	}
	// Age limit.
	n, err := s.PruneTraces(ctx, clk.Now().Add(time.Hour-30*time.Second))
	if err != nil || n != 2 {
		t.Errorf("PruneTraces = %d, %v; want 2", n, err)
	}
	if err := s.PutTrace(ctx, Trace{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty id err = %v; want ErrInvalid", err)
	}
}

func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	es := seed(t, s, 3, "persist")
	if err := s.PutVote(ctx, Vote{ExperienceID: es[0].ID, Voter: "v", TraceID: "tr", Up: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutTrace(ctx, Trace{ID: "tr", Query: "q", ExperienceIDs: []string{es[0].ID}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, err := s.GetExperience(ctx, es[0].ID); !errors.Is(err, ErrClosed) {
		t.Errorf("use after close err = %v; want ErrClosed", err)
	}

	s = openTest(t, path, Options{})
	var n int
	if err := s.EachExperience(ctx, func(e Experience) error {
		n++
		if len(e.Code) != CodeSize {
			t.Errorf("code len %d", len(e.Code))
		}
		return nil
	}); err != nil || n != 3 {
		t.Errorf("EachExperience saw %d, %v; want 3", n, err)
	}
	got, err := s.GetExperience(ctx, es[1].ID)
	if err != nil || !equalExp(got, es[1]) {
		t.Errorf("after reopen = %+v, %v; want %+v", got, err, es[1])
	}
	if tally, err := s.Tally(ctx, es[0].ID); err != nil || tally.Up != 1 {
		t.Errorf("tally after reopen = %+v, %v", tally, err)
	}
	if tr, err := s.GetTrace(ctx, "tr"); err != nil || tr.Query != "q" {
		t.Errorf("trace after reopen = %+v, %v", tr, err)
	}
	stop := errors.New("stop")
	if err := s.EachExperience(ctx, func(Experience) error { return stop }); err != stop {
		t.Errorf("EachExperience callback error = %v; want it returned as is", err)
	}
}

func TestMigrateFromV1(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	// Build a version-1 file by hand, as an older dso would have left it.
	db, err := sql.Open("sqlite", dsn(path, time.Second, false, false))
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, db, migrations[:1]); err != nil {
		t.Fatal(err)
	}
	id := ExperienceID("old", "from v1")
	coded := ExperienceID("old", "coded in v1")
	const v1Columns = `id, text, domain, confidence, status, source_model, source_node, trace_id, code, created_at, updated_at`
	if _, err := db.ExecContext(ctx, `INSERT INTO experiences (`+v1Columns+`)
		VALUES (?, 'from v1', 'old', 0.5, 'active', '', '', '', NULL, 1, 1),
		       (?, 'coded in v1', 'old', 0.5, 'active', 'nomic-embed-text', '', '', ?, 1, 1)`, id, coded, code(7)); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s := openTest(t, path, Options{})
	if v, err := s.SchemaVersion(ctx); err != nil || v != len(migrations) {
		t.Errorf("SchemaVersion = %d, %v; want %d", v, err, len(migrations))
	}
	if e, err := s.GetExperience(ctx, id); err != nil || e.Text != "from v1" || e.Space != "" || e.Prior != 0.5 || e.Key != "" {
		t.Errorf("v1 row after migration = %+v, %v (migration 7: prior from confidence, no key)", e, err)
	}
	// A v1 code was made in its source model's space: migration 4 says so.
	if e, err := s.GetExperience(ctx, coded); err != nil || e.Space != "nomic-embed-text" || len(e.Code) != CodeSize {
		t.Errorf("coded v1 row after migration: space %q, %d code bytes, %v", e.Space, len(e.Code), err)
	}
	if err := s.PutTrace(ctx, Trace{ID: "new"}); err != nil {
		t.Errorf("PutTrace on migrated file: %v", err)
	}
	s.Close()
	// Reopening an up-to-date file applies nothing and keeps data.
	s = openTest(t, path, Options{})
	if _, err := s.GetTrace(ctx, "new"); err != nil {
		t.Error(err)
	}
}

func TestSchemaTooNew(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	s := openTest(t, path, Options{})
	if _, err := s.w.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations)+1)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(ctx, path, Options{}); !errors.Is(err, ErrSchemaTooNew) {
		t.Errorf("Open newer file err = %v; want ErrSchemaTooNew", err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := Open(ctx, "", Options{}); err == nil {
		t.Error("Open(\"\") succeeded")
	}
	// A directory where the file should be: construction fails part-way and
	// Close on the partial store must not panic.
	dir := t.TempDir()
	if s, err := Open(ctx, dir, Options{}); err == nil {
		s.Close()
		t.Error("Open(directory) succeeded")
	}
	var nilStore *SQLite
	if err := nilStore.Close(); err != nil {
		t.Errorf("nil Close = %v", err)
	}
	(&SQLite{}).Close()
}

func TestOpenDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "data")
	s, err := OpenDir(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var mode string
	if err := s.r.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	var sync, fk int
	if err := s.w.QueryRow("PRAGMA synchronous").Scan(&sync); err != nil || sync != 2 {
		t.Errorf("synchronous = %d, %v; want 2 (FULL)", sync, err)
	}
	if err := s.r.QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil || fk != 1 {
		t.Errorf("foreign_keys = %d, %v; want 1", fk, err)
	}
}

func TestConcurrentWrites(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", Options{MaxTraces: 50})
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each*4)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				// Half the texts collide across workers: duplicates race.
				text := fmt.Sprintf("shared lesson %d", i)
				if w%2 == 1 {
					text = fmt.Sprintf("worker %d lesson %d", w, i)
				}
				e, _, err := s.PutExperience(ctx, Experience{Text: text, Domain: "race", Confidence: 0.5})
				if err != nil {
					errs <- err
					continue
				}
				if err := s.PutVote(ctx, Vote{ExperienceID: e.ID, Voter: fmt.Sprint("w", w), TraceID: fmt.Sprint(i), Up: i%2 == 0}); err != nil {
					errs <- err
				}
				if err := s.PutTrace(ctx, Trace{ID: fmt.Sprintf("%d-%d", w, i), ExperienceIDs: []string{e.ID}}); err != nil {
					errs <- err
				}
				if _, err := s.GetExperiences(ctx, []string{e.ID}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var n int
	if err := s.EachExperience(ctx, func(Experience) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if want := each + workers/2*each; n != want {
		t.Errorf("experiences = %d; want %d", n, want)
	}
	if tr, _ := s.CountTraces(ctx); tr != 50 {
		t.Errorf("traces = %d; want 50", tr)
	}
	shared := ExperienceID("race", "shared lesson 0")
	if vs, _ := s.Votes(ctx, shared); len(vs) != workers/2 {
		t.Errorf("votes on shared = %d; want %d", len(vs), workers/2)
	}
}

func TestContextCanceled(t *testing.T) {
	s := openTest(t, "", Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := s.PutExperience(ctx, Experience{Text: "x"}); !errors.Is(err, context.Canceled) {
		t.Errorf("PutExperience(canceled) err = %v; want context.Canceled", err)
	}
	if n, _ := s.CountTraces(context.Background()); n != 0 {
		t.Errorf("count = %d", n)
	}
}

func BenchmarkGetExperiences(b *testing.B) {
	ctx := context.Background()
	s := openTest(b, "", Options{})
	es := seed(b, s, 200, "bench")
	ids := make([]string, 0, 8)
	for i := 0; i < 8; i++ {
		ids = append(ids, es[i*25].ID)
	}
	if got, err := s.GetExperiences(ctx, ids); err != nil || len(got) != 8 {
		b.Fatalf("GetExperiences = %d, %v", len(got), err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.GetExperiences(ctx, ids); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPutExperience(b *testing.B) {
	ctx := context.Background()
	s := openTest(b, "", Options{})
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		if _, _, err := s.PutExperience(ctx, Experience{Text: fmt.Sprint("bench ", i), Confidence: 0.5, Code: code(byte(i)), Space: "hash:8"}); err != nil {
			b.Fatal(err)
		}
	}
}

// MustExist opens a store that is there and creates nothing where none is.
func TestOpenMustExist(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "typo-dir")
	if _, err := OpenDir(ctx, dir, Options{MustExist: true}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("OpenDir of no store: %v; want an error wrapping fs.ErrNotExist", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("OpenDir with MustExist made %s (stat: %v)", dir, err)
	}
	s, err := OpenDir(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenDir(ctx, dir, Options{MustExist: true})
	if err != nil {
		t.Fatalf("OpenDir of a store that is there: %v", err)
	}
	s.Close()
}

// TestMigrateToRowidTable takes a version-8 file, experiences keyed by
// their hash with votes and pending codes that refer to them, through the
// rebuild of migration 9: nothing is lost (the old table's drop must not
// cascade), the foreign keys hold on the new table, and the change log
// goes on from where it was.
func TestMigrateToRowidTable(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	db, err := sql.Open("sqlite", dsn(path, time.Second, false, false))
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, db, migrations[:8]); err != nil {
		t.Fatal(err)
	}
	const n = 50
	ids := make([]string, n)
	for i := range ids {
		text := fmt.Sprintf("lesson %d", i)
		ids[i] = ExperienceID("d", text)
		if _, err := db.ExecContext(ctx, `INSERT INTO experiences (id, text, domain, confidence, status, source_model, source_node, trace_id, code, created_at, updated_at, space, prior, key_text)
			VALUES (?, ?, 'd', 0.5, 'active', '', 'node', '', ?, ?, ?, 'hash:2048', 0.5, '')`, ids[i], text, code(byte(i)), n-i, n-i); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO votes (experience_id, trace_id, voter, up, at) VALUES (?, 't', 'v', 1, 1)`, ids[i]); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO pending_codes (experience_id, space, code) VALUES (?, 'next', ?)`, ids[i], code(byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	var last int64
	if err := db.QueryRowContext(ctx, `SELECT max(seq) FROM experience_changes`).Scan(&last); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s := openTest(t, path, Options{})
	count := func(q string, args ...any) int {
		t.Helper()
		var c int
		if err := s.r.QueryRowContext(ctx, q, args...).Scan(&c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := count(`SELECT count(*) FROM votes`); c != n {
		t.Fatalf("votes after migration = %d; want %d (dropping the old table cascaded)", c, n)
	}
	if c := count(`SELECT count(*) FROM pending_codes`); c != n {
		t.Fatalf("pending codes after migration = %d; want %d", c, n)
	}
	if c := count(`SELECT count(*) FROM experience_changes WHERE seq > ?`, last); c != 0 {
		t.Errorf("the rebuild logged %d changes; want none", c)
	}
	if c := count(`SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name = 'experiences_domain'`); c != 0 {
		t.Error("experiences_domain index survived")
	}
	for i, id := range ids {
		e, err := s.GetExperience(ctx, id)
		if err != nil || e.Text != fmt.Sprintf("lesson %d", i) || e.Space != "hash:2048" || len(e.Code) != CodeSize {
			t.Fatalf("experience %d after migration = %+v, %v", i, e, err)
		}
	}
	// The foreign keys refer to the new table and are enforced again.
	if err := s.DeleteExperience(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if c := count(`SELECT count(*) FROM votes WHERE experience_id = ?`, ids[0]); c != 0 {
		t.Errorf("a deleted experience kept %d votes: foreign keys are off after the migration", c)
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO votes (experience_id, trace_id, voter, up, at) VALUES ('missing', 't', 'v', 1, 1)`); err == nil {
		t.Error("a vote for a missing experience was accepted: foreign keys are off after the migration")
	}
	// The triggers log on the new table, after the old log's last change.
	if _, _, err := s.PutExperience(ctx, Experience{Text: "after", Domain: "d", Confidence: 0.5}); err != nil {
		t.Fatal(err)
	}
	if c := count(`SELECT count(*) FROM experience_changes WHERE seq > ?`, last); c != 2 {
		t.Errorf("changes logged after the migration = %d; want 2 (a delete, an insert)", c)
	}
	var seen []string
	if err := s.EachExperience(ctx, func(e Experience) error { seen = append(seen, e.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != n || !slices.IsSorted(seen) {
		t.Errorf("EachExperience visited %d in id order %v; want %d", len(seen), slices.IsSorted(seen), n)
	}
}
