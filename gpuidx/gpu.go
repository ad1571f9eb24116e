package gpuidx

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dso-proxy/dso/compress"
)

//go:embed kernels/hamming.cl
var kernelSource string

// GPU errors.
var (
	// ErrNoGPU means no OpenCL runtime, platform or device is usable.
	ErrNoGPU = errors.New("gpuidx: no usable GPU")
	// ErrFull means an upsert would take the index past the device memory
	// it may use (GPUConfig.MaxBytes).
	ErrFull = errors.New("gpuidx: GPU index full")
	// ErrClosed means the index was closed.
	ErrClosed = errClosed
)

// GPUConfig configures a GPU index. The zero value is the default.
type GPUConfig struct {
	// PrefixWords, Candidates and Rerank mean what they mean in CPUConfig;
	// a GPU and a CPU index configured alike return identical results.
	PrefixWords int
	Candidates  int
	Rerank      int
	// MaxBytes is the device memory the index may use; 0 means
	// MemoryFraction of the device's global memory.
	MaxBytes int64
	// MemoryFraction is the share of the device's global memory used when
	// MaxBytes is 0; 0 means 0.8.
	MemoryFraction float64
	// MaxBatch is the most queries one launch serves; 0 means 64.
	MaxBatch int
	// BatchWait is how long a Search waits for others to share its launch;
	// 0 means 200µs, negative means no wait (only queries already queued
	// share a launch).
	BatchWait time.Duration
	// AnyDevice accepts any OpenCL device, such as PoCL's CPU device;
	// false accepts only GPUs and accelerators.
	AnyDevice bool
	// Platform, when set, keeps the platforms whose name contains it
	// (case-insensitive).
	Platform string
	// Library is the OpenCL library to load; "" means "libOpenCL.so.1".
	Library string
}

// Device memory per record besides the distance scratch: the code, its
// prefix again, confidence, flags and domain id.
func recordBytes(p int) int64 { return int64(words*8 + p*8 + 4 + 1 + 4) }

// GPU is the index scanned by an OpenCL device. Codes live in device memory,
// updated slot by slot on Upsert and Delete; a host mirror (a CPU index)
// serves Get, Len and Save. Its methods are safe for concurrent use;
// concurrent Searches are gathered into shared launches.
type GPU struct {
	cfg      GPUConfig
	dev      *clDevice
	prog     uintptr
	kScan    uintptr
	kTies    uintptr
	kCompact uintptr
	kGather  uintptr
	kRerank  uintptr
	wg       int   // work-group size of scan, ties and compact
	maxRecs  int   // most records MaxBytes allows
	fixed    int64 // device memory besides the records

	mu      sync.RWMutex // protects the fields below and the record buffers
	host    *CPU         // mirror: same slots, metadata, codes
	ids     []string     // by slot, as in host
	slot    map[string]int
	dom     []uint32 // domain id by slot
	domains []string
	domID   map[string]uint32
	cap     int // records the device buffers hold
	codes   buffer
	prefix  buffer
	conf    buffer
	flags   buffer
	domBuf  buffer
	dist    buffer // MaxBatch*cap distances
	closed  bool

	launchMu sync.Mutex // serialises launches; protects the scratch below
	s        gpuScratch

	reqs chan *gpuRequest
	quit chan struct{}
	done chan struct{}
	once sync.Once
}

// gpuScratch holds a launch's device and host buffers.
type gpuScratch struct {
	qcodes, qp, masks, qvec, qnorm, hist  buffer
	thr, slim, off, lim, cnt, groups, out buffer
	pq, ps, gout, rout                    buffer
	hqcodes                               []uint64
	hqp, hmasks                           []int32
	hqvec, hqnorm                         []float32
	hhist, hcnt, hgroups                  []uint32
	hthr, hslim, hoff, hlim, hpq, hps     []int32
	hout                                  []uint64
	hgout                                 []uint16
	hrout                                 []float32
	needs, below, counts                  []int
}

const histStride = 3848 // HS in the kernels

type gpuRequest struct {
	ctx  context.Context
	q    Query
	done chan gpuResult
}

type gpuResult struct {
	hits []Hit
	err  error
}

func normPrefix(p int) int {
	switch {
	case p <= 0:
		return 8
	case p > words:
		return words
	}
	return (p + 3) / 4 * 4
}

// NewGPU opens the first usable OpenCL device, compiles the kernels and
// returns an empty index. The error wraps ErrNoGPU when no OpenCL runtime,
// platform or device is usable.
func NewGPU(cfg GPUConfig) (*GPU, error) {
	cfg.PrefixWords = normPrefix(cfg.PrefixWords)
	if cfg.Rerank <= 0 {
		cfg.Rerank = 100
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 64
	}
	if cfg.BatchWait == 0 {
		cfg.BatchWait = 200 * time.Microsecond
	}
	if cfg.MemoryFraction <= 0 || cfg.MemoryFraction > 1 {
		cfg.MemoryFraction = 0.8
	}
	if cfg.Library == "" {
		cfg.Library = "libOpenCL.so.1"
	}
	types := uint64(clDeviceTypeGPU | clDeviceTypeAccelerator)
	if cfg.AnyDevice {
		types = clDeviceTypeAll
	}
	sd, err := sharedDevice(cfg.Library, cfg.Platform, types)
	if err != nil {
		return nil, err
	}
	g := &GPU{
		cfg:   cfg,
		dev:   sd.dev,
		prog:  sd.prog,
		host:  NewCPU(CPUConfig{PrefixWords: cfg.PrefixWords, Candidates: cfg.Candidates, Rerank: cfg.Rerank, Workers: 1}),
		slot:  map[string]int{},
		domID: map[string]uint32{},
		reqs:  make(chan *gpuRequest, cfg.MaxBatch),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	if err := g.init(); err != nil {
		g.release()
		return nil, err
	}
	go g.loop()
	return g, nil
}

func (g *GPU) init() error {
	d := g.dev
	if d.localMem != 0 && d.localMem < histStride*4+64 {
		return fmt.Errorf("gpuidx: device %q has %d bytes of local memory, the scan needs %d: %w", d.name, d.localMem, histStride*4+64, ErrNoGPU)
	}
	var err error
	for _, k := range []struct {
		p    *uintptr
		name string
	}{{&g.kScan, "scan"}, {&g.kTies, "ties"}, {&g.kCompact, "compact"}, {&g.kGather, "gather"}, {&g.kRerank, "rerank"}} {
		if *k.p, err = d.kernel(g.prog, k.name); err != nil {
			return err
		}
	}
	g.wg = int(min(256, d.kernelWG(g.kScan), d.kernelWG(g.kTies)))
	if g.wg <= 0 {
		g.wg = 1
	}
	// The memory the index may use.
	budget := g.cfg.MaxBytes
	if budget <= 0 {
		budget = int64(float64(d.globalMem) * g.cfg.MemoryFraction)
	}
	g.cfg.MaxBytes = budget
	b := int64(g.cfg.MaxBatch)
	fixed := b*(words*8+4*4+compress.Dim*4+4+histStride*4+7*4) + 1<<20 // query buffers, outputs (approx.)
	per := recordBytes(g.cfg.PrefixWords) + 2*b
	g.fixed = fixed
	g.maxRecs = int(max(0, (budget-fixed)/per))
	if d.maxAlloc > 0 {
		g.maxRecs = min(g.maxRecs, int(d.maxAlloc/(words*8)), int(d.maxAlloc/uint64(2*b)))
	}
	return g.grow(min(1024, g.maxRecs))
}

// grow makes the record buffers hold c records, keeping the first len(ids).
func (g *GPU) grow(c int) error {
	d := g.dev
	n := uintptr(len(g.ids))
	p := uintptr(g.cfg.PrefixWords)
	c = max(c, 1)
	for _, b := range []struct {
		buf  *buffer
		size uintptr
	}{{&g.codes, words * 8}, {&g.prefix, p * 8}, {&g.conf, 4}, {&g.flags, 1}, {&g.domBuf, 4}} {
		if err := d.grow(b.buf, uintptr(c)*b.size, n*b.size); err != nil {
			return err
		}
	}
	d.free(&g.dist)
	var err error
	if g.dist, err = d.alloc(uintptr(c) * uintptr(g.cfg.MaxBatch) * 2); err != nil {
		return err
	}
	g.cap = c
	return nil
}

// Device reports the OpenCL platform and device the index runs on.
func (g *GPU) Device() string { return g.dev.platform + " / " + g.dev.name }

// Capacity is the most records the index may hold (GPUConfig.MaxBytes).
func (g *GPU) Capacity() int { return g.maxRecs }

// Len returns the number of records, retired ones included.
func (g *GPU) Len() int {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return len(g.ids)
}

// Get returns the metadata and code of id.
func (g *GPU) Get(id string) (Meta, compress.Code, bool) { return g.host.Get(id) }

// Save writes a snapshot of the index to w in the CPU index's format.
func (g *GPU) Save(w io.Writer) error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.host.Save(w)
}

// LoadGPU reads a snapshot written by Save (of either backend) into a new
// GPU index configured by cfg.
func LoadGPU(r io.Reader, cfg GPUConfig) (*GPU, error) {
	x, err := Load(r, CPUConfig{PrefixWords: cfg.PrefixWords, Candidates: cfg.Candidates, Rerank: cfg.Rerank, Workers: 1})
	if err != nil {
		return nil, err
	}
	return NewGPUFrom(x, cfg)
}

// NewGPUFrom returns a GPU index holding the records of x, in the same
// slots, so that both return identical results. x becomes the GPU index's
// host mirror: the caller must not use it afterwards.
func NewGPUFrom(x *CPU, cfg GPUConfig) (*GPU, error) {
	g, err := NewGPU(cfg)
	if err != nil {
		return nil, err
	}
	x.mu.RLock()
	ids := slices.Clone(x.ids)
	x.mu.RUnlock()
	if err := g.fill(x, ids); err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

// fill uploads the records of x, whose ids by slot are ids, to an empty g.
func (g *GPU) fill(x *CPU, ids []string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(ids) > g.maxRecs {
		return g.fullError(len(ids))
	}
	if err := g.grow(max(len(ids), g.cap)); err != nil {
		return err
	}
	p := g.cfg.PrefixWords
	codes := make([]uint64, 0, len(ids)*words)
	pre := make([]uint64, 0, len(ids)*p)
	conf := make([]float32, 0, len(ids))
	flags := make([]uint8, 0, len(ids))
	for i, id := range ids {
		m, c, _ := x.Get(id)
		codes = append(codes, c.Bits[:]...)
		pre = append(pre, c.Bits[:p]...)
		conf = append(conf, m.Confidence)
		flags = append(flags, flagsOf(m))
		g.slot[id] = i
		g.dom = append(g.dom, g.domainID(m.Domain))
	}
	g.ids = ids
	g.host = x
	d := g.dev
	return errors.Join(write(d, g.codes, 0, codes), write(d, g.prefix, 0, pre), write(d, g.conf, 0, conf),
		write(d, g.flags, 0, flags), write(d, g.domBuf, 0, g.dom))
}

func (g *GPU) domainID(s string) uint32 {
	d, ok := g.domID[s]
	if !ok {
		d = uint32(len(g.domains))
		g.domains = append(g.domains, s)
		g.domID[s] = d
	}
	return d
}

func (g *GPU) fullError(n int) error {
	return fmt.Errorf("gpuidx: %d records would need %d bytes of device memory, the index may use %d (GPUConfig.MaxBytes) on %q, room for %d records: %w",
		n, g.fixed+int64(n)*(recordBytes(g.cfg.PrefixWords)+2*int64(g.cfg.MaxBatch)), g.cfg.MaxBytes, g.dev.name, g.maxRecs, ErrFull)
}

// Upsert adds the record id, or replaces its code and metadata if present.
// It fails with ErrFull when a new record would not fit in the device
// memory the index may use.
func (g *GPU) Upsert(id string, m Meta, c compress.Code) error {
	if id == "" {
		return fmt.Errorf("gpuidx: upsert: empty id")
	}
	if math.IsNaN(float64(c.Scale)) || math.IsInf(float64(c.Scale), 0) || c.Scale < 0 {
		return fmt.Errorf("gpuidx: upsert %q: %w", id, compress.ErrBadScale)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	i, ok := g.slot[id]
	if !ok {
		i = len(g.ids)
		if i >= g.maxRecs {
			return fmt.Errorf("gpuidx: upsert %q: %w", id, g.fullError(i+1))
		}
		if i >= g.cap {
			if err := g.grow(min(max(2*g.cap, 1024), g.maxRecs)); err != nil {
				return fmt.Errorf("gpuidx: upsert %q: %w", id, err)
			}
		}
	}
	if err := g.host.Upsert(id, m, c); err != nil {
		return err
	}
	d := g.domainID(m.Domain)
	if !ok {
		g.slot[id] = i
		g.ids = append(g.ids, id)
		g.dom = append(g.dom, d)
	} else {
		g.dom[i] = d
	}
	if err := g.writeSlot(i, m, &c); err != nil {
		return fmt.Errorf("gpuidx: upsert %q: %w", id, err)
	}
	return nil
}

// writeSlot writes record i to the device.
func (g *GPU) writeSlot(i int, m Meta, c *compress.Code) error {
	d, p := g.dev, g.cfg.PrefixWords
	u := uintptr(i)
	for _, err := range []error{
		write(d, g.codes, u*words*8, c.Bits[:]),
		write(d, g.prefix, u*uintptr(p)*8, c.Bits[:p]),
		write(d, g.conf, u*4, []float32{m.Confidence}),
		write(d, g.flags, u, []uint8{flagsOf(m)}),
		write(d, g.domBuf, u*4, g.dom[i:i+1]),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

// Delete removes the record id and reports whether it was present. The last
// record moves into its slot, as in the CPU index.
func (g *GPU) Delete(id string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	i, ok := g.slot[id]
	if !ok || g.closed {
		return false
	}
	g.host.Delete(id)
	delete(g.slot, id)
	last := len(g.ids) - 1
	if i != last {
		g.ids[i], g.dom[i] = g.ids[last], g.dom[last]
		g.slot[g.ids[i]] = i
		m, c, _ := g.host.Get(g.ids[i])
		// A failed write leaves the device copy stale; the next upsert of
		// the record repairs it. OpenCL reports no such failure on a
		// working device.
		_ = g.writeSlot(i, m, &c)
	}
	g.ids[last] = ""
	g.ids, g.dom = g.ids[:last], g.dom[:last]
	return true
}

// Close stops the batcher and frees the device. Searches after Close fail
// with ErrClosed.
func (g *GPU) Close() error {
	g.once.Do(func() {
		close(g.quit)
		<-g.done
		g.launchMu.Lock()
		g.mu.Lock()
		g.closed = true
		g.release()
		g.mu.Unlock()
		g.launchMu.Unlock()
	})
	return nil
}

func (g *GPU) release() {
	d := g.dev
	for _, b := range []*buffer{&g.codes, &g.prefix, &g.conf, &g.flags, &g.domBuf, &g.dist,
		&g.s.qcodes, &g.s.qp, &g.s.masks, &g.s.qvec, &g.s.qnorm, &g.s.hist, &g.s.thr, &g.s.slim, &g.s.off,
		&g.s.lim, &g.s.cnt, &g.s.groups, &g.s.out, &g.s.pq, &g.s.ps, &g.s.gout, &g.s.rout} {
		d.free(b)
	}
	for _, k := range []*uintptr{&g.kScan, &g.kTies, &g.kCompact, &g.kGather, &g.kRerank} {
		if *k != 0 {
			d.api.ReleaseKernel(*k)
			*k = 0
		}
	}
}

// A device, its context, queue and compiled program are opened once per
// process and shared by its GPU indexes: the driver compiles the kernels
// once.
type deviceKey struct {
	lib, platform string
	types         uint64
}

type opened struct {
	dev  *clDevice
	prog uintptr
	err  error
}

var (
	devMu   sync.Mutex
	devices = map[deviceKey]*opened{}
)

func sharedDevice(lib, platform string, types uint64) (*opened, error) {
	devMu.Lock()
	defer devMu.Unlock()
	k := deviceKey{lib, platform, types}
	if o, ok := devices[k]; ok {
		return o, o.err
	}
	o := &opened{}
	o.dev, o.err = func() (*clDevice, error) {
		api, err := loadOpenCL(lib)
		if err != nil {
			return nil, err
		}
		return openDevice(api, platform, types)
	}()
	if o.err == nil {
		if o.prog, o.err = o.dev.build(kernelSource, ""); o.err != nil {
			o.dev.release()
		}
	}
	devices[k] = o
	return o, o.err
}

// Search returns the best K records for q, best first, exactly as a CPU
// index holding the same records would. Concurrent Searches share launches
// (GPUConfig.MaxBatch, BatchWait). ctx bounds the wait for the result; a
// launch under way is not interrupted.
func (g *GPU) Search(ctx context.Context, q Query) ([]Hit, error) {
	if err := checkQuery(&q); err != nil {
		return nil, err
	}
	r := &gpuRequest{ctx: ctx, q: q, done: make(chan gpuResult, 1)}
	select {
	case g.reqs <- r:
	case <-ctx.Done():
		return nil, fmt.Errorf("gpuidx: search: %w", ctx.Err())
	case <-g.quit:
		return nil, ErrClosed
	}
	select {
	case res := <-r.done:
		return res.hits, res.err
	case <-ctx.Done():
		return nil, fmt.Errorf("gpuidx: search: %w", ctx.Err())
	case <-g.done: // closed with r still queued
		select {
		case res := <-r.done:
			return res.hits, res.err
		default:
			return nil, ErrClosed
		}
	}
}

// SearchBatch runs qs in as few launches as MaxBatch allows and returns
// their hits in order.
func (g *GPU) SearchBatch(ctx context.Context, qs []Query) ([][]Hit, error) {
	qs = slices.Clone(qs)
	for i := range qs {
		if err := checkQuery(&qs[i]); err != nil {
			return nil, fmt.Errorf("query %d: %w", i, err)
		}
	}
	out := make([][]Hit, 0, len(qs))
	for len(qs) > 0 {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("gpuidx: search: %w", err)
		}
		m := min(len(qs), g.cfg.MaxBatch)
		hits, err := g.run(qs[:m])
		if err != nil {
			return nil, err
		}
		out = append(out, hits...)
		qs = qs[m:]
	}
	return out, nil
}

// loop gathers queued searches into launches.
func (g *GPU) loop() {
	defer close(g.done)
	var batch []*gpuRequest
	var qs []Query
	for {
		batch = batch[:0]
		select {
		case r := <-g.reqs:
			batch = append(batch, r)
		case <-g.quit:
			return
		}
		if g.cfg.BatchWait > 0 {
			t := time.NewTimer(g.cfg.BatchWait)
		wait:
			for len(batch) < g.cfg.MaxBatch {
				select {
				case r := <-g.reqs:
					batch = append(batch, r)
				case <-t.C:
					break wait
				}
			}
			t.Stop()
		}
	drain:
		for len(batch) < g.cfg.MaxBatch {
			select {
			case r := <-g.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		live := batch[:0]
		qs = qs[:0]
		for _, r := range batch {
			if err := r.ctx.Err(); err != nil {
				r.done <- gpuResult{err: fmt.Errorf("gpuidx: search: %w", err)}
				continue
			}
			live = append(live, r)
			qs = append(qs, r.q)
		}
		if len(live) == 0 {
			continue
		}
		hits, err := g.run(qs)
		for i, r := range live {
			if err != nil {
				r.done <- gpuResult{err: err}
			} else {
				r.done <- gpuResult{hits: hits[i]}
			}
		}
	}
}

// checkQuery validates q as CPU.Search does and fills in its code and K.
func checkQuery(q *Query) error {
	if q.K == 0 {
		q.K = 10
	}
	if q.K < 0 || q.Candidates < 0 || q.Rerank < 0 {
		return fmt.Errorf("gpuidx: search k=%d: %w", q.K, ErrQuery)
	}
	if q.Mode > ModePrefix {
		return fmt.Errorf("gpuidx: search mode %v: %w", q.Mode, ErrQuery)
	}
	if q.Vector != nil && len(q.Vector) != compress.Dim || q.Vector == nil && (q.Code == nil || q.Mode.rerank()) {
		return fmt.Errorf("gpuidx: search with a %d-component vector in mode %v: %w", len(q.Vector), q.Mode, ErrQuery)
	}
	if q.Code == nil {
		c, err := compress.Encode(q.Vector)
		if err != nil {
			return fmt.Errorf("gpuidx: search: %w", err)
		}
		q.Code = &c
	}
	return nil
}

// histCut returns the smallest distance t at which hist holds k records up
// to and including t, how many records lie below t, and whether hist holds
// k records.
func histCut(hist []uint32, k int) (t, below int, ok bool) {
	sum := 0
	for d, h := range hist {
		if sum+int(h) >= k {
			return d, sum, true
		}
		sum += int(h)
	}
	last := len(hist) - 1
	return last, sum - int(hist[last]), false
}

// tieSlack is how many surplus records at the cut-off distance a query may
// compact before the ties pass bounds them by slot.
const tieSlack = 4096

// tiePasses counts the launches of the ties pass, for tests.
var tiePasses atomic.Int64

// run searches qs (at most MaxBatch, checked) in one launch of each kernel.
func (g *GPU) run(qs []Query) ([][]Hit, error) {
	g.launchMu.Lock()
	defer g.launchMu.Unlock()
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed {
		return nil, ErrClosed
	}
	out := make([][]Hit, len(qs))
	n := len(g.ids)
	if n == 0 {
		for i := range out {
			out[i] = []Hit{}
		}
		return out, nil
	}
	hits, err := g.launch(qs, n)
	if err != nil {
		return nil, fmt.Errorf("gpuidx: gpu search: %w", err)
	}
	return hits, nil
}

func grown[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n, n+n/4)
	}
	return s[:n]
}

func (g *GPU) launch(qs []Query, n int) ([][]Hit, error) {
	d, s := g.dev, &g.s
	B := len(qs)
	p := g.cfg.PrefixWords
	nd := len(g.domains)
	mw := (nd + 31) / 32

	// Per-query parameters.
	s.hqcodes = grown(s.hqcodes, B*words)
	s.hqp = grown(s.hqp, 4*B)
	s.hmasks = s.hmasks[:0]
	s.needs = grown(s.needs, B)
	keeps := make([]int, B)
	anyRerank := false
	for b, q := range qs {
		copy(s.hqcodes[b*words:], q.Code.Bits[:])
		keep := q.K
		if q.Mode.rerank() {
			anyRerank = true
			keep = max(q.Rerank, g.cfg.Rerank, q.K)
			if q.Rerank > 0 {
				keep = max(q.Rerank, q.K)
			}
		}
		keeps[b] = keep
		s.needs[b] = keep
		nw := words
		if q.Mode.prefix() {
			c := q.Candidates
			if c == 0 {
				c = g.cfg.Candidates
			}
			if c == 0 {
				c = 1024 + n/256
			}
			s.needs[b] = max(c, keep)
			nw = p
		}
		usep := int32(0)
		if q.Mode.prefix() {
			usep = 1
		}
		mo := int32(-1)
		if q.Domain != "" {
			mo = int32(len(s.hmasks))
			for w := range mw {
				var m uint32
				for j := w * 32; j < min(nd, w*32+32); j++ {
					if DomainMatch(q.Domain, g.domains[j]) {
						m |= 1 << (j - w*32)
					}
				}
				s.hmasks = append(s.hmasks, int32(m))
			}
		}
		s.hqp[4*b], s.hqp[4*b+1], s.hqp[4*b+2], s.hqp[4*b+3] = usep, int32(nw), int32(math.Float32bits(q.MinConfidence)), mo
	}
	if len(s.hmasks) == 0 {
		s.hmasks = append(s.hmasks, 0)
	}
	for _, e := range []struct {
		b    *buffer
		size uintptr
	}{{&s.qcodes, uintptr(g.cfg.MaxBatch) * words * 8}, {&s.qp, uintptr(g.cfg.MaxBatch) * 16}, {&s.masks, uintptr(len(s.hmasks)) * 4},
		{&s.hist, uintptr(g.cfg.MaxBatch) * histStride * 4}, {&s.thr, uintptr(g.cfg.MaxBatch) * 4}, {&s.slim, uintptr(g.cfg.MaxBatch) * 4},
		{&s.off, uintptr(g.cfg.MaxBatch) * 4}, {&s.lim, uintptr(g.cfg.MaxBatch) * 4}, {&s.cnt, uintptr(g.cfg.MaxBatch) * 4}} {
		if err := d.ensure(e.b, e.size); err != nil {
			return nil, err
		}
	}
	if err := errors.Join(write(d, s.qcodes, 0, s.hqcodes), write(d, s.qp, 0, s.hqp), write(d, s.masks, 0, s.hmasks),
		d.zero(s.hist, uintptr(B)*histStride*4)); err != nil {
		return nil, err
	}

	// Pass 1: distances, filters and histograms.
	if err := d.setArgs(g.kScan, g.codes, g.prefix, int32(p), g.conf, g.flags, g.domBuf, s.masks, s.qcodes, s.qp,
		int32(n), int32(g.cap), g.dist, s.hist); err != nil {
		return nil, err
	}
	if err := d.launch(g.kScan, n, B, g.wg); err != nil {
		return nil, err
	}
	s.hhist = grown(s.hhist, B*histStride)
	if err := read(d, s.hist, 0, s.hhist); err != nil {
		return nil, err
	}

	// The cut-off distance of each query; bound large ties by slot.
	s.hthr, s.hslim = grown(s.hthr, B), grown(s.hslim, B)
	s.hoff, s.hlim = grown(s.hoff, B), grown(s.hlim, B)
	s.below, s.counts = grown(s.below, B), grown(s.counts, B)
	bigTies := false
	for b, q := range qs {
		maxDist := words * 64
		if q.Mode.prefix() {
			maxDist = p * 64
		}
		h := s.hhist[b*histStride : b*histStride+maxDist+1]
		t, below, ok := histCut(h, s.needs[b])
		s.hthr[b], s.hslim[b], s.below[b] = int32(t), int32(n), below
		s.counts[b] = below + int(h[t])
		if ok && int(h[t])-(s.needs[b]-below) > tieSlack {
			bigTies = true
		}
	}
	if bigTies {
		tiePasses.Add(1)
		ng := (n + g.wg - 1) / g.wg
		if err := d.ensure(&s.groups, uintptr(B*ng)*4); err != nil {
			return nil, err
		}
		// Only the queries with large ties take part.
		thr := make([]int32, B)
		for b := range qs {
			thr[b] = -1
			h := s.hhist[b*histStride:]
			t := int(s.hthr[b])
			if int(h[t])-(s.needs[b]-s.below[b]) > tieSlack {
				thr[b] = int32(t)
			}
		}
		if err := write(d, s.thr, 0, thr); err != nil {
			return nil, err
		}
		if err := d.setArgs(g.kTies, g.dist, int32(n), int32(g.cap), s.thr, s.groups, int32(ng)); err != nil {
			return nil, err
		}
		if err := d.launch(g.kTies, n, B, g.wg); err != nil {
			return nil, err
		}
		s.hgroups = grown(s.hgroups, B*ng)
		if err := read(d, s.groups, 0, s.hgroups); err != nil {
			return nil, err
		}
		for b := range qs {
			if thr[b] < 0 {
				continue
			}
			need, got := s.needs[b]-s.below[b], 0
			for gi, c := range s.hgroups[b*ng : (b+1)*ng] {
				got += int(c)
				if got >= need {
					s.hslim[b] = int32(min(n, (gi+1)*g.wg))
					break
				}
			}
			s.counts[b] = s.below[b] + got
		}
	}
	total := 0
	for b := range qs {
		s.hoff[b], s.hlim[b] = int32(total), int32(s.counts[b])
		total += s.counts[b]
	}
	if err := d.ensure(&s.out, uintptr(max(total, 1))*8); err != nil {
		return nil, err
	}
	if err := errors.Join(write(d, s.thr, 0, s.hthr), write(d, s.slim, 0, s.hslim), write(d, s.off, 0, s.hoff),
		write(d, s.lim, 0, s.hlim), d.zero(s.cnt, uintptr(B)*4)); err != nil {
		return nil, err
	}

	// Pass 2: compact the candidates.
	if err := d.setArgs(g.kCompact, g.dist, int32(n), int32(g.cap), s.thr, s.slim, s.off, s.lim, s.cnt, s.out); err != nil {
		return nil, err
	}
	if err := d.launch(g.kCompact, n, B, g.wg); err != nil {
		return nil, err
	}
	s.hout = grown(s.hout, total)
	s.hcnt = grown(s.hcnt, B)
	if err := errors.Join(read(d, s.out, 0, s.hout), read(d, s.cnt, 0, s.hcnt)); err != nil {
		return nil, err
	}
	tops := make([][]uint64, B)
	for b := range qs {
		if int(s.hcnt[b]) != s.counts[b] {
			return nil, fmt.Errorf("compacted %d candidates for query %d, expected %d", s.hcnt[b], b, s.counts[b])
		}
		l := s.hout[s.hoff[b] : int(s.hoff[b])+s.counts[b]]
		slices.Sort(l)
		tops[b] = l[:min(len(l), s.needs[b])]
	}

	// Pass 3: full distances of the prefix candidates.
	s.hpq, s.hps = s.hpq[:0], s.hps[:0]
	for b, q := range qs {
		if q.Mode.prefix() {
			for _, v := range tops[b] {
				s.hpq = append(s.hpq, int32(b))
				s.hps = append(s.hps, int32(uint32(v)))
			}
		}
	}
	if m := len(s.hps); m > 0 {
		s.hgout = grown(s.hgout, m)
		if err := g.pairs(m); err != nil {
			return nil, err
		}
		if err := errors.Join(d.ensure(&s.gout, uintptr(m)*2),
			d.setArgs(g.kGather, g.codes, s.qcodes, s.pq, s.ps, int32(m), s.gout)); err != nil {
			return nil, err
		}
		if err := d.launch(g.kGather, m, 1, 64); err != nil {
			return nil, err
		}
		if err := read(d, s.gout, 0, s.hgout); err != nil {
			return nil, err
		}
		j := 0
		for b, q := range qs {
			if !q.Mode.prefix() {
				continue
			}
			l := tops[b]
			for i, v := range l {
				l[i] = uint64(s.hgout[j])<<32 | v&0xFFFFFFFF
				j++
			}
			slices.Sort(l)
			tops[b] = l[:min(len(l), keeps[b])]
		}
	}

	// Pass 4: exact re-ranking.
	var scores []float32
	if anyRerank {
		s.hpq, s.hps = s.hpq[:0], s.hps[:0]
		s.hqvec = grown(s.hqvec, B*compress.Dim)
		s.hqnorm = grown(s.hqnorm, B)
		for b, q := range qs {
			if !q.Mode.rerank() {
				continue
			}
			copy(s.hqvec[b*compress.Dim:], q.Vector)
			s.hqnorm[b] = rerankNorm(q.Vector)
			for _, v := range tops[b] {
				s.hpq = append(s.hpq, int32(b))
				s.hps = append(s.hps, int32(uint32(v)))
			}
		}
		if m := len(s.hps); m > 0 {
			if err := errors.Join(g.pairs(m),
				d.ensure(&s.qvec, uintptr(g.cfg.MaxBatch)*compress.Dim*4), d.ensure(&s.qnorm, uintptr(g.cfg.MaxBatch)*4),
				d.ensure(&s.rout, uintptr(m)*4)); err != nil {
				return nil, err
			}
			if err := errors.Join(write(d, s.qvec, 0, s.hqvec), write(d, s.qnorm, 0, s.hqnorm),
				d.setArgs(g.kRerank, g.codes, s.qvec, s.qnorm, s.pq, s.ps, int32(m), s.rout)); err != nil {
				return nil, err
			}
			if err := d.launch(g.kRerank, m, 1, 64); err != nil {
				return nil, err
			}
			s.hrout = grown(s.hrout, m)
			if err := read(d, s.rout, 0, s.hrout); err != nil {
				return nil, err
			}
			scores = s.hrout
		}
	}

	// Hits, as CPU.Search builds them.
	res := make([][]Hit, B)
	j := 0
	for b, q := range qs {
		hits := make([]Hit, len(tops[b]))
		for i, v := range tops[b] {
			dist := int(v >> 32)
			hits[i] = Hit{ID: g.ids[uint32(v)], Distance: dist}
			if q.Mode.rerank() {
				hits[i].Score = scores[j]
				j++
			} else {
				hits[i].Score = float32(math.Cos(math.Pi * float64(dist) / compress.Dim))
			}
		}
		res[b] = finishHits(hits, q)
	}
	return res, nil
}

// pairs uploads the (query, slot) pairs in s.hpq, s.hps.
func (g *GPU) pairs(m int) error {
	d, s := g.dev, &g.s
	return errors.Join(d.ensure(&s.pq, uintptr(m)*4), d.ensure(&s.ps, uintptr(m)*4),
		write(d, s.pq, 0, s.hpq), write(d, s.ps, 0, s.hps))
}
