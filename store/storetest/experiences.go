package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dso-proxy/dso/store"
)

func equalExp(a, b store.Experience) bool {
	return a.ID == b.ID && a.Text == b.Text && a.Domain == b.Domain && a.Confidence == b.Confidence &&
		a.Status == b.Status && a.SourceModel == b.SourceModel && a.SourceNode == b.SourceNode &&
		a.TraceID == b.TraceID && slices.Equal(a.Code, b.Code) && a.Space == b.Space &&
		a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt)
}

func testPutDuplicate(t *testing.T, open Open) {
	ctx := context.Background()
	clk := NewClock()
	s := open(t, Options{Clock: clk})
	e := store.Experience{Text: "Prefer table-driven tests.", Domain: "Code/Go", Confidence: 0.7,
		SourceModel: "gpt-4o", SourceNode: "node-a", TraceID: "tr-1", Code: Code(1), Space: "hash:8"}
	first, created, err := s.PutExperience(ctx, e)
	if err != nil || !created {
		t.Fatalf("PutExperience = %v, %v; want created", created, err)
	}
	if first.ID != store.ExperienceID("code/go", e.Text) || first.Domain != "code/go" || first.Status != store.StatusActive {
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
	got, err := s.GetExperience(ctx, first.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !equalExp(got, first) {
		t.Errorf("GetExperience = %+v; want %+v", got, first)
	}
}

func testPutInvalid(t *testing.T, open Open) {
	ctx := context.Background()
	s := open(t, Options{})
	ok := store.Experience{Text: "t", Confidence: 0.5}
	tests := []struct {
		name string
		mod  func(*store.Experience)
		msg  string
	}{
		{"empty text", func(e *store.Experience) { e.Text = " \n\t " }, "empty text"},
		{"confidence NaN", func(e *store.Experience) { e.Confidence = math.NaN() }, "confidence"},
		{"short code", func(e *store.Experience) { e.Code = make([]byte, 480) }, "code is 480 bytes"},
		{"code without space", func(e *store.Experience) { e.Code = Code(0) }, "space"},
		{"bad status", func(e *store.Experience) { e.Status = "deleted" }, "status"},
		{"wrong id", func(e *store.Experience) { e.ID = strings.Repeat("0", 64) }, "content hash"},
		{"huge text", func(e *store.Experience) { e.Text = strings.Repeat("x", store.MaxTextBytes+1) }, "text is"},
	}
	for _, tt := range tests {
		e := ok
		tt.mod(&e)
		if _, _, err := s.PutExperience(ctx, e); !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: err = %v; want ErrInvalid mentioning %q", tt.name, err, tt.msg)
		}
	}
	if page, _, err := s.ListExperiences(ctx, store.ListOptions{}); err != nil || len(page) != 0 {
		t.Errorf("after invalid puts: %d rows, %v; want none", len(page), err)
	}
	if n, err := s.LastChange(ctx); err != nil || n != 0 {
		t.Errorf("LastChange after invalid puts = %d, %v; want 0", n, err)
	}
}

func testPutBatch(t *testing.T, open Open) {
	ctx := context.Background()
	s := open(t, Options{})
	first := seed(t, s, 1, "b")[0]
	es := []store.Experience{
		{Text: "one", Confidence: 0.5},
		{Text: first.Text, Domain: "b", Confidence: 0.9},
		{Text: "one", Confidence: 0.2}, // the same as the first, within the batch
	}
	got, created, err := s.PutExperiences(ctx, es)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(created, []bool{true, false, false}) {
		t.Errorf("created = %v; want [true false false]", created)
	}
	if got[1].Confidence != 0.5 || got[2].ID != got[0].ID || got[2].Confidence != 0.5 {
		t.Errorf("got = %+v; want the stored records", got)
	}
	// A batch larger than one statement (SQLite writes 64 rows a statement),
	// repeats far apart and records already stored among the new.
	var big []store.Experience
	for i := range 300 {
		big = append(big, store.Experience{Text: fmt.Sprintf("big %d", i%200), Confidence: 0.5})
	}
	big[250] = store.Experience{Text: "one", Confidence: 0.1}
	got, created, err = s.PutExperiences(ctx, big)
	if err != nil {
		t.Fatal(err)
	}
	for i := range big {
		want := i < 200
		if created[i] != want || got[i].ID != store.ExperienceID("", big[i].Text) || got[i].Confidence != 0.5 {
			t.Fatalf("big batch record %d: created %v, got %+v; want created %v and the stored record", i, created[i], got[i], want)
		}
	}
	// An invalid record fails the whole batch.
	if _, _, err := s.PutExperiences(ctx, []store.Experience{{Text: "two", Confidence: 0.5}, {Text: ""}}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("batch with an invalid record err = %v; want ErrInvalid", err)
	}
	if _, err := s.GetExperience(ctx, store.ExperienceID("", "two")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("valid half of a refused batch: err = %v; want ErrNotFound", err)
	}
}

func testGetExperiences(t *testing.T, open Open) {
	ctx := context.Background()
	s := open(t, Options{})
	es := seed(t, s, 5, "math")
	got, err := s.GetExperiences(ctx, []string{es[3].ID, "missing", es[0].ID, es[3].ID, es[4].ID})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range got {
		ids = append(ids, e.ID)
	}
	if want := []string{es[3].ID, es[0].ID, es[4].ID}; !slices.Equal(ids, want) {
		t.Errorf("ids = %v; want %v", ids, want)
	}
	if !equalExp(got[0], es[3]) {
		t.Errorf("got[0] = %+v; want %+v", got[0], es[3])
	}
	many := make([]string, 0, 1201)
	for i := range 1200 {
		many = append(many, fmt.Sprint("nope", i))
	}
	many = append(many, es[1].ID)
	if got, err := s.GetExperiences(ctx, many); err != nil || len(got) != 1 || got[0].ID != es[1].ID {
		t.Errorf("GetExperiences(1201 ids) = %d, %v", len(got), err)
	}
	if _, err := s.GetExperience(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetExperience(missing) err = %v; want ErrNotFound", err)
	}
}

func testListPaging(t *testing.T, open Open) {
	ctx := context.Background()
	s := open(t, Options{})
	goES := seed(t, s, 7, "code/go")
	seed(t, s, 3, "code")
	seed(t, s, 4, "cooking")
	seed(t, s, 2, "codex")
	retired := store.StatusRetired
	if _, err := s.UpdateExperience(ctx, goES[0].ID, store.Update{Status: &retired}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts store.ListOptions
		want int
	}{
		{"all", store.ListOptions{Limit: 3}, 16},
		{"prefix", store.ListOptions{DomainPrefix: "code", Limit: 4}, 12},
		{"prefix case", store.ListOptions{DomainPrefix: "CODE/", Limit: 2}, 7},
		{"active go", store.ListOptions{DomainPrefix: "code/go", Status: store.StatusActive, Limit: 2}, 6},
		{"retired", store.ListOptions{Status: store.StatusRetired}, 1},
		{"none", store.ListOptions{DomainPrefix: "zzz"}, 0},
		{"exact page", store.ListOptions{DomainPrefix: "cooking", Limit: 4}, 4},
	}
	for _, tt := range tests {
		var all []string
		opts := tt.opts
		for pages := 0; ; pages++ {
			if pages > 20 {
				t.Fatalf("%s: paging does not end", tt.name)
			}
			page, next, err := s.ListExperiences(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			if opts.Limit > 0 && len(page) > opts.Limit {
				t.Fatalf("%s: page of %d > limit %d", tt.name, len(page), opts.Limit)
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
			t.Errorf("%s: listed %d; want %d", tt.name, len(all), tt.want)
		}
		if !slices.IsSorted(all) || len(slices.Compact(slices.Clone(all))) != len(all) {
			t.Errorf("%s: ids not strictly ordered: %v", tt.name, all)
		}
	}
	if _, _, err := s.ListExperiences(ctx, store.ListOptions{Status: "gone"}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("bad status err = %v; want ErrInvalid", err)
	}
}

func testUpdateDelete(t *testing.T, open Open) {
	ctx := context.Background()
	clk := NewClock()
	s := open(t, Options{Clock: clk})
	e := seed(t, s, 1, "x")[0]
	clk.Advance(time.Minute)
	conf, retired := 0.9, store.StatusRetired
	got, err := s.UpdateExperience(ctx, e.ID, store.Update{Confidence: &conf, Status: &retired, Code: []byte{}})
	if err != nil {
		t.Fatal(err)
	}
	if got.Confidence != 0.9 || got.Status != store.StatusRetired || got.Code != nil || got.Space != "" ||
		!got.UpdatedAt.Equal(clk.Now()) || !got.CreatedAt.Equal(e.CreatedAt) || got.Text != e.Text {
		t.Errorf("updated = %+v", got)
	}
	if n, err := s.CountCodes(ctx, "hash:8"); err != nil || n != 0 {
		t.Errorf("CountCodes after clearing the code = %d, %v; want 0", n, err)
	}
	// An update writes only its fields: rescoring the confidence keeps a
	// status written since it read the record (learn's rescore relies on it).
	lower := 0.4
	if got, err := s.UpdateExperience(ctx, e.ID, store.Update{Confidence: &lower}); err != nil || got.Confidence != lower || got.Status != store.StatusRetired {
		t.Errorf("confidence-only update = %+v, %v; want confidence %v, still retired", got, err, lower)
	}
	bad := 2.0
	if _, err := s.UpdateExperience(ctx, e.ID, store.Update{Confidence: &bad}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("bad update err = %v; want ErrInvalid", err)
	}
	if _, err := s.UpdateExperience(ctx, e.ID, store.Update{Code: []byte{1}}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("bad code err = %v; want ErrInvalid", err)
	}
	if _, err := s.UpdateExperience(ctx, "nope", store.Update{Confidence: &conf}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("update missing err = %v; want ErrNotFound", err)
	}
	if err := s.PutVote(ctx, store.Vote{ExperienceID: e.ID, Voter: "v", Up: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteExperience(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteExperience(ctx, e.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second delete err = %v; want ErrNotFound", err)
	}
	if _, err := s.GetExperience(ctx, e.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get deleted err = %v; want ErrNotFound", err)
	}
	if vs, err := s.Votes(ctx, e.ID); err != nil || len(vs) != 0 {
		t.Errorf("votes of deleted = %v, %v; want none", vs, err)
	}
	if page, _, err := s.ListExperiences(ctx, store.ListOptions{}); err != nil || len(page) != 0 {
		t.Errorf("list after delete = %d, %v; want none", len(page), err)
	}
}

func testEach(t *testing.T, open Open) {
	ctx := context.Background()
	s := open(t, Options{})
	es := seed(t, s, 1100, "each") // more than one batch
	var ids []string
	if err := s.EachExperience(ctx, func(e store.Experience) error { ids = append(ids, e.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(ids) != len(es) || !slices.IsSorted(ids) {
		t.Errorf("EachExperience visited %d (sorted %v); want %d in id order", len(ids), slices.IsSorted(ids), len(es))
	}
	stop := errors.New("stop")
	n := 0
	err := s.EachExperience(ctx, func(store.Experience) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("EachExperience with a failing fn = %v after %d; want stop after 1", err, n)
	}
}
