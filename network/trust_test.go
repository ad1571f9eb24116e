package network

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dso-proxy/dso/store"
	"golang.org/x/mod/sumdb/note"
)

func TestStandings(t *testing.T) {
	fresh := make([]string, 50)
	for i := range fresh {
		fresh[i] = fmt.Sprintf("fresh%02d", i)
	}
	for _, tt := range []struct {
		name    string
		cfg     TrustConfig
		vouches map[string][]string
		want    map[string]Standing // keys absent from want must be absent
	}{
		{"line of four: the last trusts the first",
			TrustConfig{Roots: []string{"C"}, Self: "D"},
			map[string][]string{"C": {"B"}, "B": {"A"}, "A": {"D"}},
			map[string]Standing{"C": {1, 1, ""}, "B": {1, 2, "C"}, "A": {1, 3, "B"}}},
		{"depth bounds the reach",
			TrustConfig{Roots: []string{"C"}, Depth: 2},
			map[string][]string{"C": {"B"}, "B": {"A"}},
			map[string]Standing{"C": {1, 1, ""}, "B": {1, 2, "C"}}},
		{"roots only",
			TrustConfig{Roots: []string{"C"}, Depth: -1},
			map[string][]string{"C": {"B"}},
			map[string]Standing{"C": {1, 1, ""}}},
		{"weight splits over a voucher's keys",
			TrustConfig{Roots: []string{"C"}},
			map[string][]string{"C": {"B", "E"}, "B": {"A"}},
			map[string]Standing{"C": {1, 1, ""}, "B": {0.5, 2, "C"}, "E": {0.5, 2, "C"}, "A": {0.5, 3, "B"}}},
		{"two vouchers add up, capped at 1",
			TrustConfig{Roots: []string{"C", "E"}},
			map[string][]string{"C": {"B"}, "E": {"B", "F"}},
			map[string]Standing{"C": {1, 1, ""}, "E": {1, 1, ""}, "B": {1, 2, "C"}, "F": {0.5, 2, "E"}}},
		{"a cycle feeds no weight back",
			TrustConfig{Roots: []string{"C"}},
			map[string][]string{"C": {"B", "X"}, "B": {"C", "X"}, "X": {"B"}},
			map[string]Standing{"C": {1, 1, ""}, "B": {0.5, 2, "C"}, "X": {0.5, 2, "C"}}},
		{"fresh keys no trusted node vouches for weigh nothing",
			TrustConfig{Roots: []string{"C"}},
			map[string][]string{"M": fresh},
			map[string]Standing{"C": {1, 1, ""}}},
		{"a distrusted key has no standing, and its vouches count for nothing",
			TrustConfig{Roots: []string{"C", "F"}, Distrusted: []string{"F"}},
			map[string][]string{"C": {"B", "F"}, "F": {"X"}, "B": {"F"}},
			map[string]Standing{"C": {1, 1, ""}, "B": {1, 2, "C"}}},
		{"self is never weighed",
			TrustConfig{Roots: []string{"C", "D"}, Self: "D"},
			map[string][]string{"C": {"D", "B"}},
			map[string]Standing{"C": {1, 1, ""}, "B": {1, 2, "C"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := Standings(tt.cfg, tt.vouches)
			if len(got) != len(tt.want) {
				t.Errorf("standings %v; want %v", got, tt.want)
			}
			for k, w := range tt.want {
				g := got[k]
				if math.Abs(g.Weight-w.Weight) > 1e-9 || g.Depth != w.Depth || g.Via != w.Via {
					t.Errorf("%s: %+v; want %+v", k, g, w)
				}
			}
		})
	}
}

// A trusted node that mints fresh keys and vouches for them adds at most
// its own weight, however many: only MaxVouches count, sharing it.
func TestStandingsBoundSybils(t *testing.T) {
	var fresh []string
	for i := range 50 {
		fresh = append(fresh, fmt.Sprintf("fresh%02d", i))
	}
	got := Standings(TrustConfig{Roots: []string{"A", "B", "C", "M"}}, map[string][]string{"M": fresh})
	var sybils float64
	counted := 0
	for _, k := range fresh {
		if w := got[k].Weight; w > 0 {
			sybils += w
			counted++
		}
	}
	if counted != DefaultMaxVouches || math.Abs(sybils-1) > 1e-9 {
		t.Errorf("%d fresh keys weigh %v together; want %d of them, weighing M's 1", counted, sybils, DefaultMaxVouches)
	}
}

// multiHost serves logs by path prefix, as a node serves its own log and
// its mirrors.
func multiHost(t *testing.T, logs map[string]TileSource) string {
	t.Helper()
	mux := http.NewServeMux()
	for prefix, l := range logs {
		mux.Handle(prefix+"/", http.StripPrefix(prefix, NewHandler(l, nil)))
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// recordingAdmit remembers which authors' records were admitted, and
// whether trusted.
type recordingAdmit struct {
	mu      sync.Mutex
	trusted map[string]int
	other   map[string]int
}

func (r *recordingAdmit) admit(ctx context.Context, rec Record, trusted bool) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if trusted {
		r.trusted[rec.Author]++
		return Admitted, nil
	}
	r.other[rec.Author]++
	return Quarantine, nil
}

func (r *recordingAdmit) counts(author string) (int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.trusted[author], r.other[author]
}

// A node follows the logs its peer vouches for, through the peer's
// mirrors, and trusts them; what an untrusted peer vouches for is not
// followed.
func TestSyncerFollowsVouchedLogs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	idH, idK, idQ, idF := testIdentity(t, "nodeH"), testIdentity(t, "nodeK"), testIdentity(t, "nodeQ"), testIdentity(t, "nodeF")
	logH := openTestLog(t, idH, filepath.Join(dir, "h.db"))
	logK := openTestLog(t, idK, filepath.Join(dir, "k.db"))
	logQ := openTestLog(t, idQ, filepath.Join(dir, "q.db"))
	logF := openTestLog(t, idF, filepath.Join(dir, "f.db"))
	appendN(t, logK, idK, 0, 3)
	appendN(t, logF, idF, 10, 12)
	for _, v := range []struct {
		l   *Log
		key string
	}{{logH, idK.VerifierKey}, {logQ, idF.VerifierKey}} {
		if n, err := v.l.Vouch(ctx, "hanzo", []string{v.key}, t0); err != nil || n != 1 {
			t.Fatalf("vouch: %d, %v", n, err)
		}
		if n, err := v.l.Vouch(ctx, "hanzo", []string{v.key}, t0.Add(time.Hour)); err != nil || n != 0 {
			t.Fatalf("vouching again: %d added, %v; want none", n, err)
		}
	}
	host := multiHost(t, map[string]TileSource{"/log/hanzo": logH, "/log/hanzo" + MirrorPath(verifierOf(t, idK)): logK})
	qhost := multiHost(t, map[string]TileSource{"/log/hanzo": logQ, "/log/hanzo" + MirrorPath(verifierOf(t, idF)): logF})

	st := openTestState(t, dir)
	rec := &recordingAdmit{trusted: map[string]int{}, other: map[string]int{}}
	s, stop := runSyncer(t, SyncConfig{Network: "hanzo", Interval: 10 * time.Millisecond, Dir: dir, State: st, Admit: rec.admit,
		Peers: []Peer{{URL: host, Key: idH.VerifierKey, Trusted: true}, {URL: qhost, Key: idQ.VerifierKey}}})
	waitFor(t, "nodeK's records admitted, trusted", func() bool { n, _ := rec.counts("nodeK"); return n == 3 })
	stop()
	logs := map[string]LogStatus{}
	for _, ls := range s.Logs() {
		logs[ls.Author] = ls
	}
	if k := logs["nodeK"]; k.URL != mirrorAt(host, verifierOf(t, idK)) || k.Depth != 2 || k.Weight != 1 || k.Records[Admitted] != 3 {
		t.Errorf("nodeK's log %+v; want followed at depth 2 through nodeH's mirror", k)
	}
	if h := logs["nodeH"]; h.Records[Vouched] != 1 {
		t.Errorf("nodeH's log %+v; want its vouch counted", h)
	}
	if _, ok := logs["nodeF"]; ok {
		t.Errorf("nodeF followed, vouched for only by an untrusted peer: %+v", logs["nodeF"])
	}
	if q := logs["nodeQ"]; q.Trusted || q.Weight != 0 {
		t.Errorf("nodeQ %+v; want no standing", q)
	}

	// The vouches are kept: a restart follows nodeK again at once.
	s2, err := NewSyncer(ctx, SyncConfig{Network: "hanzo", Dir: t.TempDir(), State: st, Admit: rec.admit,
		Peers: []Peer{{URL: host, Key: idH.VerifierKey, Trusted: true}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if n := len(s2.Logs()); n != 2 || s2.Weight(idK.VerifierKey) != 1 {
		t.Errorf("after restart: %d logs, nodeK weighs %v; want nodeH and nodeK, 1", n, s2.Weight(idK.VerifierKey))
	}
}

// A log whose records were quarantined has them admitted once a trusted
// node vouches for it.
func TestSyncerReleasesQuarantineOnStanding(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	idH, idQ := testIdentity(t, "nodeH"), testIdentity(t, "nodeQ")
	logH := openTestLog(t, idH, filepath.Join(dir, "h.db"))
	logQ := openTestLog(t, idQ, filepath.Join(dir, "q.db"))
	appendN(t, logQ, idQ, 0, 2)
	host := multiHost(t, map[string]TileSource{"/log/hanzo": logH, "/log/hanzo" + MirrorPath(verifierOf(t, idQ)): logQ})
	qhost := multiHost(t, map[string]TileSource{"/log/hanzo": logQ})
	st := openTestState(t, dir)
	var mu sync.Mutex
	lib := &fakeLibrary{es: map[string]store.Experience{}}
	a := &Admitter{Network: "hanzo", Library: lib, State: st}
	admit := func(ctx context.Context, r Record, trusted bool) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		return a.Admit(ctx, r, trusted)
	}
	held := func() int { mu.Lock(); defer mu.Unlock(); return len(lib.es) }
	var running atomic.Pointer[Syncer] // admission may start before runSyncer returns
	a.Weight = func(author string) float64 {
		if s := running.Load(); s != nil {
			return s.AuthorWeight(author)
		}
		return 1
	}
	s, _ := runSyncer(t, SyncConfig{Network: "hanzo", Interval: 10 * time.Millisecond, Dir: dir, State: st, Admit: admit,
		Peers: []Peer{{URL: host, Key: idH.VerifierKey, Trusted: true}, {URL: qhost, Key: idQ.VerifierKey}}})
	running.Store(s)
	quarantined := func() int { _, n, _ := st.ListQuarantine(ctx, 10); return n }
	waitFor(t, "nodeQ's records quarantined", func() bool { return quarantined() == 2 })
	if n := held(); n != 0 {
		t.Fatalf("library holds %d records of an untrusted log", n)
	}
	if _, err := logH.Vouch(ctx, "hanzo", []string{idQ.VerifierKey}, t0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "nodeQ's records admitted once nodeH vouches for it", func() bool { return held() == 2 && quarantined() == 0 })
	if w := s.Weight(idQ.VerifierKey); w != 1 {
		t.Errorf("nodeQ weighs %v; want 1, nodeH's whole vouch", w)
	}
	// nodeH no longer vouches for it: it loses its standing.
	if n, err := logH.Vouch(ctx, "hanzo", nil, t0.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("revoking: %d records, %v; want one", n, err)
	}
	waitFor(t, "nodeQ's standing gone with nodeH's vouch", func() bool { return s.Weight(idQ.VerifierKey) == 0 })
}

// A log's vouches follow the keys it is given: new ones are vouched for,
// dropped ones revoked, the same ones left alone.
func TestLogVouchesFollowTheKeys(t *testing.T) {
	ctx := context.Background()
	id := testIdentity(t, "nodeH")
	l := openTestLog(t, id, filepath.Join(t.TempDir(), "h.db"))
	a, b := testIdentity(t, "nodeA").VerifierKey, testIdentity(t, "nodeB").VerifierKey
	for _, step := range []struct {
		keys []string
		want []string // the records added, "+key" or "-key"
	}{
		{[]string{a, b}, []string{"+" + a, "+" + b}},
		{[]string{a, b}, nil},
		{[]string{a}, []string{"-" + b}},
		{[]string{a}, nil},
		{[]string{b}, []string{"+" + b, "-" + a}},
	} {
		before := l.Size()
		if _, err := l.Vouch(ctx, "hanzo", step.keys, t0); err != nil {
			t.Fatal(err)
		}
		var got []string
		for i := before; i < l.Size(); i++ {
			var b []byte
			if err := l.db.QueryRowContext(ctx, `SELECT data FROM entries WHERE idx = ?`, i).Scan(&b); err != nil {
				t.Fatal(err)
			}
			r, err := Open(b, note.VerifierList(verifierOf(t, id)))
			if err != nil || r.Vouch == nil {
				t.Fatalf("entry %d: %+v, %v", i, r, err)
			}
			sign := "+"
			if r.Vouch.Revoked {
				sign = "-"
			}
			got = append(got, sign+r.Vouch.Key)
		}
		if !slices.Equal(got, step.want) {
			t.Errorf("vouching for %d keys added %q; want %q", len(step.keys), got, step.want)
		}
	}
}

// The state's connections sync less than the log's in the same file: the
// log's signed checkpoints must survive a power cut, what the node keeps
// of others' logs is handed to it again.
func TestStateSyncsLessThanTheLog(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "hanzo.db")
	l := openTestLog(t, testIdentity(t, "nodeA"), path)
	st, err := OpenState(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, c := range []struct {
		name string
		db   interface {
			QueryRowContext(context.Context, string, ...any) *sql.Row
		}
		want int
	}{{"log", l.db, 2}, {"state", st.db, 1}} {
		var got int
		if err := c.db.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&got); err != nil || got != c.want {
			t.Errorf("%s: synchronous %d, %v; want %d", c.name, got, err, c.want)
		}
	}
}

// A log that shows one history through one node's mirror and another
// through a second node's is caught by a node that follows both: the log
// is fetched through the first and checked against the second's copy.
func TestSyncerCatchesASplitView(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	idH1, idH2, idK := testIdentity(t, "nodeH1"), testIdentity(t, "nodeH2"), testIdentity(t, "nodeK")
	logH1 := openTestLog(t, idH1, filepath.Join(dir, "h1.db"))
	logH2 := openTestLog(t, idH2, filepath.Join(dir, "h2.db"))
	// nodeK signs two histories of its log, and shows one to each host.
	k1 := openTestLog(t, idK, filepath.Join(dir, "k1.db"))
	k2 := openTestLog(t, idK, filepath.Join(dir, "k2.db"))
	appendN(t, k1, idK, 0, 3)
	appendN(t, k2, idK, 10, 13)
	for _, l := range []*Log{logH1, logH2} {
		if _, err := l.Vouch(ctx, "hanzo", []string{idK.VerifierKey}, t0); err != nil {
			t.Fatal(err)
		}
	}
	vK := verifierOf(t, idK)
	h1 := multiHost(t, map[string]TileSource{"/log/hanzo": logH1, "/log/hanzo" + MirrorPath(vK): k1})
	h2 := multiHost(t, map[string]TileSource{"/log/hanzo": logH2, "/log/hanzo" + MirrorPath(vK): k2})
	st := openTestState(t, dir)
	rec := &recordingAdmit{trusted: map[string]int{}, other: map[string]int{}}
	s, stop := runSyncer(t, SyncConfig{Network: "hanzo", Interval: 10 * time.Millisecond, Dir: dir, State: st, Admit: rec.admit,
		Peers: []Peer{{URL: h1, Key: idH1.VerifierKey, Trusted: true}, {URL: h2, Key: idH2.VerifierKey, Trusted: true}}})
	k := func() LogStatus {
		for _, ls := range s.Logs() {
			if ls.Author == "nodeK" {
				return ls
			}
		}
		return LogStatus{}
	}
	waitFor(t, "nodeK's split view caught", func() bool { return k().State == PeerForked })
	stop()
	ls := k()
	if ls.Fork == nil || ls.Fork.Old == ls.Fork.New {
		t.Errorf("nodeK %+v; want both signed checkpoints as evidence", ls)
	}
	if _, f, err := st.Follow(ctx, idK.VerifierKey); err != nil || f == nil {
		t.Errorf("fork evidence not kept: %v, %v", f, err)
	}
}
