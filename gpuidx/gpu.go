package gpuidx

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
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

	// mu protects the fields below and the record buffers. host changes
	// only under mu's write lock, so that holding mu lets a GPU method read
	// host's fields (slots, ids, domains) directly.
	mu     sync.RWMutex
	host   *CPU // mirror: same slots, ids, metadata, codes, domain ids
	cap    int  // records the device buffers hold
	codes  buffer
	prefix buffer
	conf   buffer
	flags  buffer
	domBuf buffer
	dist   buffer // MaxBatch*cap distances
	closed bool

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
		cfg:  cfg,
		dev:  sd.dev,
		prog: sd.prog,
		host: NewCPU(hostConfig(cfg)),
		reqs: make(chan *gpuRequest, cfg.MaxBatch),
		quit: make(chan struct{}),
		done: make(chan struct{}),
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

// grow makes the record buffers hold c records, keeping those held.
func (g *GPU) grow(c int) error {
	d := g.dev
	n := uintptr(g.host.n)
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
	return g.host.n
}

// Reserve makes room in the host mirror for n records in all (see
// CPU.Reserve); the device buffers grow as records arrive.
func (g *GPU) Reserve(n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.host.Reserve(n)
}

// Bytes is the host memory the index holds (its mirror), in bytes; device
// memory is not counted.
func (g *GPU) Bytes() int64 {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.host.Bytes()
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
	x, err := Load(r, hostConfig(cfg))
	if err != nil {
		return nil, err
	}
	return NewGPUFrom(x, cfg)
}

// Restore replaces the records of g with those of a snapshot written by
// Save (of either backend): it reads the snapshot into a new host mirror
// while g goes on serving, then uploads it. On error g is unchanged,
// unless the device fails in the upload.
func (g *GPU) Restore(r io.Reader) error {
	x, err := Load(r, hostConfig(g.cfg))
	if err != nil {
		return err
	}
	return g.fill(x)
}

// hostConfig configures a GPU index's host mirror: it is never scanned.
func hostConfig(cfg GPUConfig) CPUConfig {
	return CPUConfig{PrefixWords: cfg.PrefixWords, Candidates: cfg.Candidates, Rerank: cfg.Rerank, Workers: 1, ListsFrom: -1}
}

// NewGPUFrom returns a GPU index holding the records of x, in the same
// slots, so that both return identical results. x becomes the GPU index's
// host mirror: the caller must not use it afterwards.
func NewGPUFrom(x *CPU, cfg GPUConfig) (*GPU, error) {
	g, err := NewGPU(cfg)
	if err != nil {
		return nil, err
	}
	if err := g.fill(x); err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

// fill uploads the records of x to g, whose mirror x becomes in place of
// the records g held, a chunk of records at a time.
func (g *GPU) fill(x *CPU) error {
	x.stopLists()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	x.mu.Lock() // x is g's from here on: g.mu guards it
	defer x.mu.Unlock()
	n := x.n
	if n > g.maxRecs {
		return g.fullError(n)
	}
	if err := g.grow(max(n, g.cap)); err != nil { // before g.host is x: the device holds none of its records yet
		return err
	}
	g.host = x
	d, p := g.dev, g.cfg.PrefixWords
	var errs []error
	var pre []uint64 // the prefixes of a chunk, when x keeps prefixes of another length
	for lo := 0; lo < n; lo += chunkRows {
		m := min(chunkRows, n-lo)
		codes := x.codes.span(lo, m)
		prefix := x.prefix.span(lo, m)
		if x.cfg.PrefixWords != p {
			pre = pre[:0]
			for i := range m {
				pre = append(pre, codes[i*words:i*words+p]...)
			}
			prefix = pre
		}
		u := uintptr(lo)
		errs = append(errs, write(d, g.codes, u*words*8, codes), write(d, g.prefix, u*uintptr(p)*8, prefix))
	}
	errs = append(errs, write(d, g.conf, 0, x.conf[:n]), write(d, g.flags, 0, x.flags[:n]), write(d, g.domBuf, 0, x.dom[:n]))
	return errors.Join(errs...)
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
	i, ok := g.host.slotOf(id)
	if !ok {
		i = g.host.n
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
		write(d, g.domBuf, u*4, g.host.dom[i:i+1]),
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
	i, ok := g.host.slotOf(id)
	if !ok || g.closed {
		return false
	}
	last := g.host.n - 1
	g.host.Delete(id)
	if i != last {
		// The last record moved into slot i.
		m, c := g.host.record(i)
		// A failed write leaves the device copy stale; the next upsert of
		// the record repairs it. OpenCL reports no such failure on a
		// working device.
		_ = g.writeSlot(i, m, &c)
	}
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
