package library

import (
	"context"
	"time"

	"github.com/dso-proxy/dso/store"
)

// Store is what a Library needs of its store: the records, the change log
// it follows, and the embedding spaces' stats and codes. store.SQLite (the
// embedded default) and store.Redis (shared by several replicas) both
// implement it, with the same sentinel errors.
type Store interface {
	Records
	ChangeLog
	Spaces
}

// Records reads and writes experiences.
type Records interface {
	PutExperiences(ctx context.Context, es []store.Experience) ([]store.Experience, []bool, error)
	GetExperiences(ctx context.Context, ids []string) ([]store.Experience, error)
	UpdateExperience(ctx context.Context, id string, u store.Update) (store.Experience, error)
	DeleteExperience(ctx context.Context, id string) error
	ListExperiences(ctx context.Context, o store.ListOptions) ([]store.Experience, string, error)
	EachExperience(ctx context.Context, fn func(store.Experience) error) error
	SampleExperiences(ctx context.Context, space string, n int) ([]store.Experience, error)
}

// ChangeLog is the log of experience writes that Follow applies to the
// index (see store.SQLite.Changes).
type ChangeLog interface {
	Changes(ctx context.Context, after int64, limit int) (ids []string, last int64, err error)
	LastChange(ctx context.Context) (int64, error)
	PruneChanges(ctx context.Context, keepRows int) (int64, error)
}

// Spaces keeps each embedding space's centre and the codes made in it.
type Spaces interface {
	GetSpace(ctx context.Context, name string) (store.SpaceStats, error)
	PutSpace(ctx context.Context, sp store.SpaceStats) (store.SpaceStats, error)
	CountCodes(ctx context.Context, space string) (int, error)
	SetCodes(ctx context.Context, us []store.CodeUpdate) error
	PutPendingCodes(ctx context.Context, us []store.CodeUpdate) error
	PendingCodes(ctx context.Context, space string, fn func(id string, code []byte) error) error
	CommitPendingCodes(ctx context.Context, space string) error
}

// IndexWalker is a store that walks what the index holds of each
// experience (store.SQLite.EachIndexed: id, domain, confidence, status,
// code and space, in id order) faster than EachExperience walks all of
// it; the library fills its index with it where the store has it.
type IndexWalker interface {
	EachIndexed(ctx context.Context, fn func(store.Experience) error) error
}

// eachIndexed walks the store for filling an index: with EachIndexed
// where the store has it, else EachExperience.
func (l *Library) eachIndexed(ctx context.Context, fn func(store.Experience) error) error {
	if w, ok := l.store.(IndexWalker); ok {
		return w.EachIndexed(ctx, fn)
	}
	return l.store.EachExperience(ctx, fn)
}

// ChangeWaiter is a ChangeLog that can wait for a change (store.Redis
// does, with a blocking stream read): Follow then applies a change as soon
// as it is logged instead of at its next tick.
type ChangeWaiter interface {
	// WaitChanges returns true once the log has an entry after the cursor,
	// or false after wait or when ctx is done.
	WaitChanges(ctx context.Context, after int64, wait time.Duration) (bool, error)
}
