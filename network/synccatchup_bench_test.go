package network

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/store"
)

// benchWait bounds the wait for the last 1%, in seconds.
var benchWait = 600

// BenchmarkSyncerCatchUp is two nodes whose libraries differ by 1%, on the
// path dso serve runs: a Syncer with its defaults (256 entries a fetch)
// over HTTP, admitting each record into a real library (re-embedded with
// the hash embedder, its code checked against the record's, stored in
// SQLite). The follower holds 99% of a
// 100,000-experience log (BENCH_N for another size), admitted; the
// benchmark times the sync of the last 1% until every record is in the
// library, and reports the bytes that crossed the wire for it, in all and
// per new experience.
//
//	go test -run xxx -bench SyncerCatchUp -benchtime 1x -timeout 20m ./network
func BenchmarkSyncerCatchUp(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("BENCH_N")); err == nil && v > 0 {
		n = v
	}
	have := n - n/100
	ctx := context.Background()
	dir := b.TempDir()
	id := testIdentity(b, "nodeA")
	const space = "hash:2048:1"
	l := openTestLog(b, id, filepath.Join(dir, "log.db"))
	sdb, err := store.OpenDir(ctx, filepath.Join(dir, "store"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer sdb.Close()
	lib, err := library.New(ctx, library.Config{Store: sdb,
		Space: library.Space{Name: space, Embedder: library.EmbedFunc(providers.NewHashEmbedder(2048, 1).Embed)}})
	if err != nil {
		b.Fatal(err)
	}
	defer lib.Close()
	text := func(i int) string { return fmt.Sprintf("Lesson %d: check the error from Close on written files.", i) }
	// Each record carries its author's code of the text, in the space
	// both nodes embed in, as dso publishes it (484 bytes).
	exp := func(i int) Experience {
		c, _, err := lib.Code(ctx, space, text(i))
		if err != nil {
			b.Fatal(err)
		}
		code, err := c.MarshalBinary()
		if err != nil {
			b.Fatal(err)
		}
		return Experience{Network: "hanzo", Domain: "code.go", Text: text(i), Confidence: 0.8, Space: space, Code: code,
			Time: t0.Add(time.Duration(i) * time.Second)}
	}
	publish := func(from, to int) {
		for lo := from; lo < to; lo += 5000 {
			var es []Experience
			for i := lo; i < min(to, lo+5000); i++ {
				es = append(es, exp(i))
			}
			if _, err := l.Publish(ctx, es); err != nil {
				b.Fatal(err)
			}
		}
	}
	publish(0, have)
	fetch := serve(b, l)

	// The follower's node: 99% taken in already, as a sync would have
	// left it (the state at the checkpoint of 99%, the library holding
	// those experiences).
	st := openTestState(b, dir)
	key := verifierOf(b, id)
	m, err := OpenMirror(ctx, MirrorConfig{Path: filepath.Join(dir, fmt.Sprintf("hanzo-mirror-%08x.db", key.KeyHash())),
		Origin: l.Origin(), Key: id.VerifierKey})
	if err != nil {
		b.Fatal(err)
	}
	f, err := NewFollower(FollowConfig{Fetcher: fetch, Key: key, Origin: l.Origin(), MaxEntries: MaxMaxEntries, Mirror: m,
		Accept: func(context.Context, int64, Record) error { return nil }})
	if err != nil {
		b.Fatal(err)
	}
	for f.State().Next < int64(have) {
		if _, err := f.Sync(ctx); err != nil {
			b.Fatal(err)
		}
	}
	if err := st.SaveFollow(ctx, id.VerifierKey, f.State()); err != nil {
		b.Fatal(err)
	}
	if err := m.Close(); err != nil {
		b.Fatal(err)
	}
	for lo := 0; lo < have; lo += 5000 {
		var es []store.Experience
		for i := lo; i < min(have, lo+5000); i++ {
			es = append(es, store.Experience{Text: text(i), Domain: "code.go", Confidence: 0.8, Status: store.StatusActive, SourceNode: "nodeA"})
		}
		if _, _, err := lib.AddMany(ctx, es); err != nil {
			b.Fatal(err)
		}
	}
	publish(have, n)

	a := &Admitter{Network: "hanzo", Library: lib, State: st}
	s, err := NewSyncer(ctx, SyncConfig{Network: "hanzo", Dir: dir, State: st, Admit: a.Admit,
		Peers: []Peer{{URL: fetch.Base, Key: id.VerifierKey, Trusted: true}}, Client: fetch.Client})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	b.ResetTimer()
	start := time.Now()
	go func() { defer close(done); s.Run(rctx) }()
	for s.Logs()[0].Records[Admitted] < int64(n-have) {
		if time.Since(start) > time.Duration(benchWait)*time.Second {
			b.Fatalf("the last 1%% not admitted in time: %+v", s.Logs()[0])
		}
		time.Sleep(time.Millisecond)
	}
	took := time.Since(start)
	b.StopTimer()
	cancel()
	<-done
	if got := lib.Len(); got != n {
		b.Fatalf("library holds %d; want %d", got, n)
	}
	wire := s.Logs()[0].BytesFetched
	b.ReportMetric(float64(wire), "wire-B")
	b.ReportMetric(float64(wire)/float64(n-have), "wire-B/new-exp")
	b.ReportMetric(float64(took.Milliseconds()), "sync-ms")
}
