// Package storetest is a conformance suite for the stores behind dso's
// library: every implementation (store.SQLite, store.Redis) runs Run and
// so answers every call the same way, sentinel errors included. FillSQLite
// fills a store fast for benchmarks.
package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dso-proxy/dso/store"
)

// Store is every call the suite makes: the union of what library, learn
// and proxy need of a store.
type Store interface {
	PutExperience(ctx context.Context, e store.Experience) (store.Experience, bool, error)
	PutExperiences(ctx context.Context, es []store.Experience) ([]store.Experience, []bool, error)
	GetExperience(ctx context.Context, id string) (store.Experience, error)
	GetExperiences(ctx context.Context, ids []string) ([]store.Experience, error)
	UpdateExperience(ctx context.Context, id string, u store.Update) (store.Experience, error)
	DeleteExperience(ctx context.Context, id string) error
	ListExperiences(ctx context.Context, o store.ListOptions) ([]store.Experience, string, error)
	EachExperience(ctx context.Context, fn func(store.Experience) error) error

	GetSpace(ctx context.Context, name string) (store.SpaceStats, error)
	PutSpace(ctx context.Context, sp store.SpaceStats) (store.SpaceStats, error)
	SampleExperiences(ctx context.Context, space string, n int) ([]store.Experience, error)
	SetCodes(ctx context.Context, us []store.CodeUpdate) error
	CountCodes(ctx context.Context, space string) (int, error)
	PutPendingCodes(ctx context.Context, us []store.CodeUpdate) error
	PendingCodes(ctx context.Context, space string, fn func(id string, code []byte) error) error
	CommitPendingCodes(ctx context.Context, space string) error

	PutVote(ctx context.Context, v store.Vote) error
	Votes(ctx context.Context, experienceID string) ([]store.Vote, error)
	Tally(ctx context.Context, experienceID string) (store.Tally, error)
	RecordFeedback(ctx context.Context, fb store.Feedback, up bool, experienceIDs []string) error
	PendingFeedback(ctx context.Context, limit int) ([]store.Feedback, error)
	MarkFeedback(ctx context.Context, traceID, voter string, updatedAt time.Time, state store.FeedbackState) error

	PutTrace(ctx context.Context, t store.Trace) error
	PutTraces(ctx context.Context, ts []store.Trace) error
	GetTrace(ctx context.Context, id string) (store.Trace, error)
	PruneTraces(ctx context.Context, now time.Time) (int, error)
	CountTraces(ctx context.Context) (int, error)
	ListTraces(ctx context.Context, o store.TraceListOptions) ([]store.ListedTrace, string, error)

	PutResponse(ctx context.Context, r store.Response) error
	GetResponse(ctx context.Context, id string) (store.Response, error)
	DeleteResponse(ctx context.Context, id string) error

	Changes(ctx context.Context, after int64, limit int) ([]string, int64, error)
	LastChange(ctx context.Context) (int64, error)
	PruneChanges(ctx context.Context, keepRows int) (int64, error)

	Close() error
}

// Options are what a test asks of the store it opens.
type Options struct {
	Clock       store.Clock
	MaxTraces   int
	TraceMaxAge time.Duration
	// MaxResponses and ResponseMaxAge as in store.Options.
	MaxResponses   int
	ResponseMaxAge time.Duration
}

// Open opens a new, empty store for one test, closed by the test's
// cleanup.
type Open func(t *testing.T, o Options) Store

// Run runs the whole suite against the stores open makes.
func Run(t *testing.T, open Open) {
	for _, c := range []struct {
		name string
		fn   func(*testing.T, Open)
	}{
		{"PutDuplicate", testPutDuplicate},
		{"PutInvalid", testPutInvalid},
		{"PutBatch", testPutBatch},
		{"GetExperiences", testGetExperiences},
		{"ListPaging", testListPaging},
		{"UpdateDelete", testUpdateDelete},
		{"Each", testEach},
		{"Spaces", testSpaces},
		{"Codes", testCodes},
		{"PendingCodes", testPendingCodes},
		{"PendingCodesOtherSpace", testPendingCodesOtherSpace},
		{"Votes", testVotes},
		{"ConcurrentVotes", testConcurrentVotes},
		{"Feedback", testFeedback},
		{"Traces", testTraces},
		{"ListTraces", testListTraces},
		{"PriorAndKey", testPriorAndKey},
		{"Responses", testResponses},
		{"ResponseRetention", testResponseRetention},
		{"Changes", testChanges},
		{"ChangesPruned", testChangesPruned},
	} {
		t.Run(c.name, func(t *testing.T) { c.fn(t, open) })
	}
}

// Clock is a clock tests move by hand.
type Clock struct {
	mu sync.Mutex // protects t
	t  time.Time
}

// NewClock returns a Clock at a fixed instant with a nanosecond part.
func NewClock() *Clock { return &Clock{t: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)} }

// Now implements store.Clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock on.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Code is a valid code whose bytes start at b.
func Code(b byte) []byte {
	c := make([]byte, store.CodeSize)
	for i := range c {
		c[i] = b + byte(i)
	}
	return c
}

func seed(t *testing.T, s Store, n int, domain string) []store.Experience {
	t.Helper()
	out := make([]store.Experience, n)
	for i := range out {
		e, _, err := s.PutExperience(context.Background(), store.Experience{
			Text: fmt.Sprintf("lesson %d in %s", i, domain), Domain: domain, Confidence: 0.5, Code: Code(byte(i)), Space: "hash:8",
		})
		if err != nil {
			t.Fatal(err)
		}
		out[i] = e
	}
	return out
}
