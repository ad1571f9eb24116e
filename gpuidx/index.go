package gpuidx

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/dso-proxy/dso/compress"
)

// Meta is what the scan filters on.
type Meta struct {
	// Domain is a dot-separated path such as "code.rust.async"; "" is the
	// root domain, matched only by an empty query domain.
	Domain string
	// Confidence is the record's confidence; queries can ask for a minimum.
	Confidence float32
	// Retired records stay in the index but are never returned.
	Retired bool
}

// Mode selects the search strategy.
type Mode uint8

const (
	// ModePrefixRerank (the zero Mode) scans a prefix of every code, checks
	// the full code of the best candidates, then re-ranks the best of those
	// by the exact dot product of the float query with their sign vectors.
	ModePrefixRerank Mode = iota
	// ModeFull ranks every code by full Hamming distance.
	ModeFull
	// ModeFullRerank ranks every code by full Hamming distance, then
	// re-ranks the best by the exact dot product.
	ModeFullRerank
	// ModePrefix scans a prefix of every code, then ranks the best
	// candidates by full Hamming distance.
	ModePrefix
)

func (m Mode) String() string {
	switch m {
	case ModePrefixRerank:
		return "prefix+rerank"
	case ModeFull:
		return "full"
	case ModeFullRerank:
		return "full+rerank"
	case ModePrefix:
		return "prefix"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

func (m Mode) prefix() bool { return m == ModePrefixRerank || m == ModePrefix }
func (m Mode) rerank() bool { return m == ModePrefixRerank || m == ModeFullRerank }

// Query is one search.
type Query struct {
	// Vector is the canonical, centred query (compress.Dim components). It
	// is required by the re-ranking modes; the others need it only when
	// Code is nil.
	Vector []float32
	// Code is the query's code; nil means compress.Encode(Vector).
	Code *compress.Code
	// K is the number of hits wanted; 0 means 10.
	K int
	// Domain keeps records whose domain is Domain or below it, matching
	// whole dot-separated segments ("code" matches "code.rust" but not
	// "codegen"); "" keeps every domain.
	Domain string
	// MinConfidence drops records with a lower confidence; 0 keeps all
	// non-negative confidences.
	MinConfidence float32
	// Mode is the strategy; the zero value is ModePrefixRerank.
	Mode Mode
	// Candidates is how many codes the prefix pass keeps; 0 means the
	// index's CPUConfig.Candidates.
	Candidates int
	// Rerank is how many codes are re-ranked exactly; 0 means
	// max(CPUConfig.Rerank, K).
	Rerank int
	// Probe is how many lists the prefix modes read where the index keeps
	// lists; 0 means CPUConfig.Probe.
	Probe int
	// Exhaustive makes the prefix modes scan every record even where the
	// index keeps lists (see CPUConfig.ListsFrom).
	Exhaustive bool
}

// Hit is one result.
type Hit struct {
	ID string
	// Score estimates the cosine between query and record. In the
	// re-ranking modes it is the exact dot product of the float query with
	// the record's sign vector, normalised: √(π/2)·q·sign/(‖q‖·√Dim) (the
	// record's scale is its magnitude, which cosine ignores); otherwise it is
	// cos(π·Distance/compress.Dim). Higher is better.
	Score float32
	// Distance is the full Hamming distance between the codes.
	Distance int
}

// CPUConfig configures a CPU index. The zero value is the default.
type CPUConfig struct {
	// PrefixWords is the number of leading 64-bit words the prefix pass
	// reads, rounded up to a multiple of 4, at most 60; 0 means 8 (512 bits).
	PrefixWords int
	// Candidates is how many codes the prefix pass keeps for the full-code
	// pass; 0 means 1024 + n/256 for an index of n codes.
	Candidates int
	// Rerank is how many codes are re-ranked exactly; 0 means 100.
	Rerank int
	// Workers is the number of goroutines a scan uses; 0 means GOMAXPROCS.
	Workers int
	// ListsFrom is the size from which the index keeps an inverted file
	// (see ivf.go), trained in the background and again at each doubling
	// (while a load that Reserve announced runs, only once it is done or
	// a search comes), and the prefix modes read only the lists nearest a
	// query; 0 means 1<<18 (262,144) records; a negative value never.
	ListsFrom int
	// Probe is the number of lists a search reads; 0 means defaultProbe.
	Probe int
}

// defaultProbe is the lists a search reads by default, chosen on STS-B
// train sentences (dso bench index --sweep): recall@10 against the exact
// ranking 0.991 at 1M experiences (1,024 lists), 0.9795 at 10M (4,096).
const defaultProbe = 48

// listCandidates is how many records a search reading lists keeps for the
// full-code pass unless a Candidates is given: among the records of the
// nearest lists, more finds next to nothing more (dso bench index --sweep
// on STS-B train sentences: recall@10 0.9795 at 1,024, 0.980 at 2,048 and
// at 1024 + 1/256 of the index, at 10M).
const listCandidates = 1024

// listMin is the fewest records lists are trained on.
const listMin = 1024

// Errors.
var (
	ErrQuery    = errors.New("gpuidx: invalid query")
	ErrFormat   = errors.New("gpuidx: not an index snapshot")
	ErrVersion  = errors.New("gpuidx: unsupported snapshot version")
	ErrChecksum = errors.New("gpuidx: snapshot checksum mismatch")
)

const words = compress.Words

// CPU is the in-memory index scanned by the CPU. Its methods are safe for
// concurrent use: searches share a read lock, and Upsert and Delete take the
// write lock, so they wait for running scans and scans see each change whole.
//
// A record takes its code (480 bytes) and the code's prefix again
// (8·PrefixWords), both in chunks that growing never copies (see rows); its
// id in 32 bytes (see ids.go); its scale, confidence, flags and domain (13
// bytes); and 5 to 11 bytes of slot table. Nothing is held per record
// that the garbage collector has to scan.
type CPU struct {
	cfg  CPUConfig
	seed maphash.Seed

	mu      sync.RWMutex // protects the fields below
	n       int          // records, in slots 0..n-1
	codes   rows[uint64] // 60 words a record
	prefix  rows[uint64] // cfg.PrefixWords words a record: the leading words again, contiguous
	keys    rows[byte]   // 32 bytes a record: its id, packed
	other   []string     // by slot: the id when it is not packed ("" when it is); nil while every id is
	table   []uint32     // slot+1 by hash of the id; 0 is empty
	scales  []float32
	conf    []float32
	flags   []uint8  // flagRetired, flagNegConf
	dom     []uint32 // index into domains
	domains []string
	domID   map[string]uint32

	ls        *lists   // the inverted file; nil until trained
	lsDist    []uint16 // scratch of ls.count() for writers
	nextTrain int      // the size at which the next training starts
	loadTo    int      // the size a load announced by Reserve fills to
	tracking  bool     // a training runs: record changed slots in dirty
	overflow  bool     // more slots changed than dirty holds
	dirty     []int32
	assigned  atomic.Int64 // the slots a training has read
	gen       int          // counts Restores: a training of records since replaced is void
	training  atomic.Bool
	trainWG   sync.WaitGroup // the training running, for tests
}

// NewCPU returns an empty CPU index.
func NewCPU(cfg CPUConfig) *CPU {
	switch {
	case cfg.PrefixWords <= 0:
		cfg.PrefixWords = 8
	case cfg.PrefixWords > words:
		cfg.PrefixWords = words
	default:
		cfg.PrefixWords = (cfg.PrefixWords + 3) / 4 * 4
	}
	if cfg.Rerank <= 0 {
		cfg.Rerank = 100
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.ListsFrom == 0 {
		cfg.ListsFrom = 1 << 18
	}
	if cfg.Probe <= 0 {
		cfg.Probe = defaultProbe
	}
	return &CPU{
		cfg: cfg, seed: maphash.MakeSeed(), domID: map[string]uint32{}, nextTrain: max(cfg.ListsFrom, listMin),
		codes: newRows[uint64](words), prefix: newRows[uint64](cfg.PrefixWords), keys: newRows[byte](idBytes),
	}
}

// Len returns the number of records, retired ones included.
func (x *CPU) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.n
}

// Reserve makes room for n records in all, so that loading that many
// allocates each part of the index once, at its size. Records past n still
// fit; they grow the index as Upsert does.
func (x *CPU) Reserve(n int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if n <= x.n {
		return
	}
	x.loadTo = n
	x.codes.grow(n, true)
	x.prefix.grow(n, true)
	x.keys.grow(n, true)
	x.scales = sized(x.scales, n)
	x.conf = sized(x.conf, n)
	x.flags = sized(x.flags, n)
	x.dom = sized(x.dom, n)
	if x.other != nil {
		x.other = sized(x.other, n)
	}
	if !x.tableFits(n) {
		x.sizeTable(n)
	}
}

// sized returns s with room for n elements: s itself, or a copy of exactly
// that capacity.
func sized[T any](s []T, n int) []T {
	if cap(s) >= n {
		return s
	}
	t := make([]T, len(s), n)
	copy(t, s)
	return t
}

// Bytes is the memory the index holds, in bytes.
func (x *CPU) Bytes() int64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	b := x.codes.bytes() + x.prefix.bytes() + x.keys.bytes() + int64(cap(x.table))*4 +
		int64(cap(x.scales))*4 + int64(cap(x.conf))*4 + int64(cap(x.flags)) + int64(cap(x.dom))*4 +
		int64(cap(x.other))*16
	if x.ls != nil {
		b += x.ls.bytes()
	}
	for _, s := range x.other {
		b += int64(len(s))
	}
	for _, d := range x.domains {
		b += int64(len(d)) + 16 + 48 // the name, its header, its entry in domID
	}
	return b
}

// Upsert adds the record id, or replaces its code and metadata if present.
func (x *CPU) Upsert(id string, m Meta, c compress.Code) error {
	if id == "" {
		return fmt.Errorf("gpuidx: upsert: empty id")
	}
	if math.IsNaN(float64(c.Scale)) || math.IsInf(float64(c.Scale), 0) || c.Scale < 0 {
		return fmt.Errorf("gpuidx: upsert %q: %w", id, compress.ErrBadScale)
	}
	k := parseKey(id)
	h := x.hashKey(&k)
	x.mu.Lock()
	defer x.mu.Unlock()
	d, ok := x.domID[m.Domain]
	if !ok {
		d = uint32(len(x.domains))
		x.domains = append(x.domains, m.Domain)
		x.domID[m.Domain] = d
	}
	p := x.cfg.PrefixWords
	i, pos, ok := x.find(&k, h)
	if !ok {
		if x.n == math.MaxUint32-1 {
			return fmt.Errorf("gpuidx: upsert %q: the index holds %d records, its most", id, x.n)
		}
		if !x.tableFits(x.n + 1) {
			x.sizeTable(x.n + 1)
			_, pos, _ = x.find(&k, h)
		}
		i = x.newSlot(&k, pos)
		x.scales = append(x.scales, 0)
		x.conf = append(x.conf, 0)
		x.flags = append(x.flags, 0)
		x.dom = append(x.dom, 0)
	}
	moved := !ok || !slices.Equal(x.prefix.row(i), c.Bits[:p])
	copy(x.codes.row(i), c.Bits[:])
	copy(x.prefix.row(i), c.Bits[:p])
	x.scales[i], x.conf[i], x.flags[i], x.dom[i] = c.Scale, m.Confidence, flagsOf(m), d
	if moved {
		x.relist(i, ok)
	}
	if x.listsDue() && x.n >= x.loadTo {
		x.startTraining() // once a load is done: not for each doubling on the way
	}
	return nil
}

// newSlot gives the new id k the next slot, pos its place in the table,
// and returns the slot; the caller appends its metadata. The caller holds
// mu, or holds x alone.
func (x *CPU) newSlot(k *key, pos int) int {
	i := x.n
	x.n++
	x.codes.grow(x.n, false)
	x.prefix.grow(x.n, false)
	x.keys.grow(x.n, false)
	if k.packed {
		copy(x.keys.row(i), k.bin[:])
	} else {
		clear(x.keys.row(i))
		if x.other == nil {
			x.other = make([]string, i, cap(x.scales))
		}
	}
	if x.other != nil {
		x.other = append(x.other, k.s)
	}
	x.table[pos] = uint32(i + 1)
	return i
}

// relist puts slot i, whose prefix is new, in the list of its nearest
// centroid; was says it held a record before. The caller holds mu.
func (x *CPU) relist(i int, was bool) {
	x.markDirty(i)
	if x.ls == nil {
		return
	}
	if was {
		x.ls.remove(i)
	}
	p := x.prefix.row(i)
	x.ls.add(i, x.ls.nearest(p, x.lsDist), p)
}

// Delete removes the record id and reports whether it was present. The last
// record moves into its slot, so storage stays contiguous.
func (x *CPU) Delete(id string) bool {
	k := parseKey(id)
	h := x.hashKey(&k)
	x.mu.Lock()
	defer x.mu.Unlock()
	i, pos, ok := x.find(&k, h)
	if !ok {
		return false
	}
	x.unplace(pos)
	last := x.n - 1
	x.markDirty(i)
	if x.ls != nil {
		x.ls.remove(i)
		if i != last {
			x.ls.renumber(last, i)
		}
		x.ls.truncate(last)
	}
	if i != last {
		x.table[x.placeOf(last)] = uint32(i + 1)
		copy(x.codes.row(i), x.codes.row(last))
		copy(x.prefix.row(i), x.prefix.row(last))
		copy(x.keys.row(i), x.keys.row(last))
		x.scales[i], x.conf[i], x.flags[i], x.dom[i] = x.scales[last], x.conf[last], x.flags[last], x.dom[last]
		if x.other != nil {
			x.other[i] = x.other[last]
		}
	}
	if x.other != nil {
		x.other[last] = ""
		x.other = x.other[:last]
	}
	x.n = last
	x.scales, x.conf, x.flags, x.dom = x.scales[:last], x.conf[:last], x.flags[:last], x.dom[:last]
	x.codes.shrink(last)
	x.prefix.shrink(last)
	x.keys.shrink(last)
	return true
}

// slotOf returns the slot of id. The caller holds mu, or for a GPU
// index's mirror the GPU index's mu, under which alone the mirror changes.
func (x *CPU) slotOf(id string) (int, bool) {
	k := parseKey(id)
	i, _, ok := x.find(&k, x.hashKey(&k))
	return i, ok
}

// Get returns the metadata and code of id.
func (x *CPU) Get(id string) (Meta, compress.Code, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	i, ok := x.slotOf(id)
	if !ok {
		return Meta{}, compress.Code{}, false
	}
	m, c := x.record(i)
	return m, c, true
}

// record returns the metadata and code of slot i. The caller holds mu
// (see slotOf).
func (x *CPU) record(i int) (Meta, compress.Code) {
	var c compress.Code
	copy(c.Bits[:], x.codes.row(i))
	c.Scale = x.scales[i]
	return Meta{Domain: x.domains[x.dom[i]], Confidence: x.conf[i], Retired: x.flags[i]&flagRetired != 0}, c
}

// DomainMatch reports whether domain is query or lies below it, comparing
// whole segments, separated by '.' or '/' (both are in use: "code.go",
// "code/go"), so "code" matches "code", "code.go" and "code/go", not
// "codex". An empty query matches every domain. It is the one rule for
// "in a domain": retrieval's filter and what a node shares both use it.
func DomainMatch(query, domain string) bool {
	if query == "" || domain == query {
		return true
	}
	if !strings.HasPrefix(domain, query) {
		return false
	}
	c := domain[len(query)]
	return c == '.' || c == '/'
}

// Record flags, one byte per record so that the common filter reads one
// small array.
const (
	flagRetired = 1 << iota
	flagNegConf // confidence below 0, dropped by a zero MinConfidence
)

func flagsOf(m Meta) uint8 {
	var f uint8
	if m.Retired {
		f |= flagRetired
	}
	if m.Confidence < 0 {
		f |= flagNegConf
	}
	return f
}

// filter is a query's filters resolved against the index.
type filter struct {
	allowed []bool // by domain id; nil allows all
	minConf float32
	plain   bool // no domain and a zero minConf: the flags alone decide
	conf    []float32
	flags   []uint8
	dom     []uint32
}

func newFilter(allowed []bool, minConf float32, conf []float32, flags []uint8, dom []uint32) *filter {
	return &filter{allowed: allowed, minConf: minConf, plain: allowed == nil && minConf == 0, conf: conf, flags: flags, dom: dom}
}

func (f *filter) ok(i int) bool {
	fl := f.flags[i]
	if f.plain {
		return fl == 0
	}
	if fl&flagRetired != 0 || f.conf[i] < f.minConf {
		return false
	}
	return f.allowed == nil || f.allowed[f.dom[i]]
}
