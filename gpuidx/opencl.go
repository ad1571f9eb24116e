package gpuidx

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// The OpenCL runtime is loaded at run time through purego: no cgo, no
// toolkit and no headers at build time. Handles (platforms, devices,
// contexts, queues, programs, kernels, buffers) are opaque pointers, held as
// uintptr.

// OpenCL constants used here (values from CL/cl.h).
const (
	clSuccess = 0

	clDeviceTypeCPU         = 1 << 1
	clDeviceTypeGPU         = 1 << 2
	clDeviceTypeAccelerator = 1 << 3
	clDeviceTypeAll         = 0xFFFFFFFF

	clPlatformName = 0x0902

	clDeviceType             = 0x1000
	clDeviceMaxWorkGroupSize = 0x1004
	clDeviceMaxMemAllocSize  = 0x1010
	clDeviceGlobalMemSize    = 0x101F
	clDeviceLocalMemSize     = 0x1023
	clDeviceName             = 0x102B

	clProgramBuildLog = 0x1183

	clKernelWorkGroupSize = 0x11B0

	clMemReadWrite = 1 << 0
)

// clAPI holds the OpenCL entry points this package calls.
type clAPI struct {
	GetPlatformIDs          func(n uint32, platforms *uintptr, num *uint32) int32
	GetPlatformInfo         func(p uintptr, param uint32, size uintptr, value unsafe.Pointer, ret *uintptr) int32
	GetDeviceIDs            func(p uintptr, typ uint64, n uint32, devs *uintptr, num *uint32) int32
	GetDeviceInfo           func(d uintptr, param uint32, size uintptr, value unsafe.Pointer, ret *uintptr) int32
	CreateContext           func(props unsafe.Pointer, n uint32, devs *uintptr, notify, user uintptr, errc *int32) uintptr
	CreateCommandQueue      func(ctx, dev uintptr, props uint64, errc *int32) uintptr
	CreateProgramWithSource func(ctx uintptr, count uint32, strs *uintptr, lens *uintptr, errc *int32) uintptr
	BuildProgram            func(prog uintptr, n uint32, devs *uintptr, opts string, notify, user uintptr) int32
	GetProgramBuildInfo     func(prog, dev uintptr, param uint32, size uintptr, value unsafe.Pointer, ret *uintptr) int32
	CreateKernel            func(prog uintptr, name string, errc *int32) uintptr
	GetKernelWorkGroupInfo  func(k, dev uintptr, param uint32, size uintptr, value unsafe.Pointer, ret *uintptr) int32
	CreateBuffer            func(ctx uintptr, flags uint64, size uintptr, host unsafe.Pointer, errc *int32) uintptr
	EnqueueWriteBuffer      func(q, mem uintptr, blocking uint32, off, size uintptr, ptr unsafe.Pointer, nev uint32, evs, ev unsafe.Pointer) int32
	EnqueueReadBuffer       func(q, mem uintptr, blocking uint32, off, size uintptr, ptr unsafe.Pointer, nev uint32, evs, ev unsafe.Pointer) int32
	EnqueueCopyBuffer       func(q, src, dst uintptr, soff, doff, size uintptr, nev uint32, evs, ev unsafe.Pointer) int32
	EnqueueFillBuffer       func(q, mem uintptr, pattern unsafe.Pointer, psize, off, size uintptr, nev uint32, evs, ev unsafe.Pointer) int32
	SetKernelArg            func(k uintptr, idx uint32, size uintptr, val unsafe.Pointer) int32
	EnqueueNDRangeKernel    func(q, k uintptr, dim uint32, off, global, local *uintptr, nev uint32, evs, ev unsafe.Pointer) int32
	Finish                  func(q uintptr) int32
	ReleaseMemObject        func(uintptr) int32
	ReleaseKernel           func(uintptr) int32
	ReleaseProgram          func(uintptr) int32
	ReleaseCommandQueue     func(uintptr) int32
	ReleaseContext          func(uintptr) int32
}

var (
	clOnce = map[string]*clLoad{}
	clMu   sync.Mutex
)

type clLoad struct {
	api *clAPI
	err error
}

// loadOpenCL opens the OpenCL ICD loader lib once per name and resolves the
// entry points.
func loadOpenCL(lib string) (*clAPI, error) {
	clMu.Lock()
	defer clMu.Unlock()
	if l, ok := clOnce[lib]; ok {
		return l.api, l.err
	}
	api, err := openCL(lib)
	clOnce[lib] = &clLoad{api, err}
	return api, err
}

func openCL(lib string) (api *clAPI, err error) {
	if runtime.GOOS != "linux" && runtime.GOOS != "freebsd" {
		return nil, fmt.Errorf("gpuidx: opencl on %s: %w", runtime.GOOS, ErrNoGPU)
	}
	h, err := purego.Dlopen(lib, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, fmt.Errorf("gpuidx: load %s: %v: %w", lib, err, ErrNoGPU)
	}
	api = new(clAPI)
	reg := func(fptr any, name string) {
		if err != nil {
			return
		}
		if _, e := purego.Dlsym(h, name); e != nil {
			err = fmt.Errorf("gpuidx: %s lacks %s: %w", lib, name, ErrNoGPU)
			return
		}
		purego.RegisterLibFunc(fptr, h, name)
	}
	reg(&api.GetPlatformIDs, "clGetPlatformIDs")
	reg(&api.GetPlatformInfo, "clGetPlatformInfo")
	reg(&api.GetDeviceIDs, "clGetDeviceIDs")
	reg(&api.GetDeviceInfo, "clGetDeviceInfo")
	reg(&api.CreateContext, "clCreateContext")
	reg(&api.CreateCommandQueue, "clCreateCommandQueue")
	reg(&api.CreateProgramWithSource, "clCreateProgramWithSource")
	reg(&api.BuildProgram, "clBuildProgram")
	reg(&api.GetProgramBuildInfo, "clGetProgramBuildInfo")
	reg(&api.CreateKernel, "clCreateKernel")
	reg(&api.GetKernelWorkGroupInfo, "clGetKernelWorkGroupInfo")
	reg(&api.CreateBuffer, "clCreateBuffer")
	reg(&api.EnqueueWriteBuffer, "clEnqueueWriteBuffer")
	reg(&api.EnqueueReadBuffer, "clEnqueueReadBuffer")
	reg(&api.EnqueueCopyBuffer, "clEnqueueCopyBuffer")
	reg(&api.EnqueueFillBuffer, "clEnqueueFillBuffer")
	reg(&api.SetKernelArg, "clSetKernelArg")
	reg(&api.EnqueueNDRangeKernel, "clEnqueueNDRangeKernel")
	reg(&api.Finish, "clFinish")
	reg(&api.ReleaseMemObject, "clReleaseMemObject")
	reg(&api.ReleaseKernel, "clReleaseKernel")
	reg(&api.ReleaseProgram, "clReleaseProgram")
	reg(&api.ReleaseCommandQueue, "clReleaseCommandQueue")
	reg(&api.ReleaseContext, "clReleaseContext")
	if err != nil {
		return nil, err
	}
	return api, nil
}

// clError is a failed OpenCL call.
type clError struct {
	op   string
	code int32
}

func (e *clError) Error() string {
	return fmt.Sprintf("gpuidx: opencl %s: %s (%d)", e.op, clCodeName(e.code), e.code)
}

func clCodeName(c int32) string {
	switch c {
	case -1:
		return "CL_DEVICE_NOT_FOUND"
	case -2:
		return "CL_DEVICE_NOT_AVAILABLE"
	case -4:
		return "CL_MEM_OBJECT_ALLOCATION_FAILURE"
	case -5:
		return "CL_OUT_OF_RESOURCES"
	case -6:
		return "CL_OUT_OF_HOST_MEMORY"
	case -11:
		return "CL_BUILD_PROGRAM_FAILURE"
	case -30:
		return "CL_INVALID_VALUE"
	case -32:
		return "CL_INVALID_PLATFORM"
	case -33:
		return "CL_INVALID_DEVICE"
	case -36:
		return "CL_INVALID_COMMAND_QUEUE"
	case -38:
		return "CL_INVALID_MEM_OBJECT"
	case -46:
		return "CL_INVALID_KERNEL_NAME"
	case -48:
		return "CL_INVALID_KERNEL"
	case -49:
		return "CL_INVALID_ARG_INDEX"
	case -50:
		return "CL_INVALID_ARG_VALUE"
	case -51:
		return "CL_INVALID_ARG_SIZE"
	case -52:
		return "CL_INVALID_KERNEL_ARGS"
	case -54:
		return "CL_INVALID_WORK_GROUP_SIZE"
	case -61:
		return "CL_INVALID_BUFFER_SIZE"
	case -1001:
		return "CL_PLATFORM_NOT_FOUND_KHR"
	}
	return "CL error"
}

func clCheck(op string, code int32) error {
	if code == clSuccess {
		return nil
	}
	return &clError{op, code}
}

// clDevice is one OpenCL device with its context and in-order queue.
type clDevice struct {
	api       *clAPI
	platform  string
	name      string
	typ       uint64
	dev       uintptr
	ctx       uintptr
	queue     uintptr
	globalMem uint64
	maxAlloc  uint64
	localMem  uint64
	maxWG     uintptr
}

func (d *clDevice) infoString(get func(param uint32, size uintptr, value unsafe.Pointer, ret *uintptr) int32, param uint32) string {
	var n uintptr
	if get(param, 0, nil, &n) != clSuccess || n == 0 {
		return ""
	}
	b := make([]byte, n)
	if get(param, n, unsafe.Pointer(&b[0]), nil) != clSuccess {
		return ""
	}
	return strings.TrimRight(string(b), "\x00")
}

// openDevice picks the first device of the wanted types on a platform whose
// name contains platform, and makes its context and queue.
func openDevice(api *clAPI, platform string, types uint64) (*clDevice, error) {
	var np uint32
	if c := api.GetPlatformIDs(0, nil, &np); c != clSuccess || np == 0 {
		return nil, fmt.Errorf("gpuidx: no OpenCL platform (clGetPlatformIDs: %d): %w", c, ErrNoGPU)
	}
	ps := make([]uintptr, np)
	if c := api.GetPlatformIDs(np, &ps[0], nil); c != clSuccess {
		return nil, fmt.Errorf("gpuidx: no OpenCL platform (clGetPlatformIDs: %d): %w", c, ErrNoGPU)
	}
	var seen []string
	for _, p := range ps {
		d := &clDevice{api: api}
		d.platform = d.infoString(func(param uint32, size uintptr, v unsafe.Pointer, ret *uintptr) int32 {
			return api.GetPlatformInfo(p, param, size, v, ret)
		}, clPlatformName)
		seen = append(seen, d.platform)
		if platform != "" && !strings.Contains(strings.ToLower(d.platform), strings.ToLower(platform)) {
			continue
		}
		var nd uint32
		if api.GetDeviceIDs(p, types, 0, nil, &nd) != clSuccess || nd == 0 {
			continue
		}
		devs := make([]uintptr, nd)
		if api.GetDeviceIDs(p, types, nd, &devs[0], nil) != clSuccess {
			continue
		}
		d.dev = devs[0]
		getDev := func(param uint32, size uintptr, v unsafe.Pointer, ret *uintptr) int32 {
			return api.GetDeviceInfo(d.dev, param, size, v, ret)
		}
		d.name = d.infoString(getDev, clDeviceName)
		getDev(clDeviceType, 8, unsafe.Pointer(&d.typ), nil)
		getDev(clDeviceGlobalMemSize, 8, unsafe.Pointer(&d.globalMem), nil)
		getDev(clDeviceMaxMemAllocSize, 8, unsafe.Pointer(&d.maxAlloc), nil)
		getDev(clDeviceLocalMemSize, 8, unsafe.Pointer(&d.localMem), nil)
		getDev(clDeviceMaxWorkGroupSize, unsafe.Sizeof(d.maxWG), unsafe.Pointer(&d.maxWG), nil)
		var errc int32
		d.ctx = api.CreateContext(nil, 1, &d.dev, 0, 0, &errc)
		if errc != clSuccess {
			return nil, &clError{"clCreateContext", errc}
		}
		d.queue = api.CreateCommandQueue(d.ctx, d.dev, 0, &errc)
		if errc != clSuccess {
			api.ReleaseContext(d.ctx)
			return nil, &clError{"clCreateCommandQueue", errc}
		}
		return d, nil
	}
	return nil, fmt.Errorf("gpuidx: no usable OpenCL device of type %#x on platforms %q: %w", types, seen, ErrNoGPU)
}

func (d *clDevice) release() {
	if d.queue != 0 {
		d.api.ReleaseCommandQueue(d.queue)
		d.queue = 0
	}
	if d.ctx != 0 {
		d.api.ReleaseContext(d.ctx)
		d.ctx = 0
	}
}

// build compiles src for the device and returns the program, or the build
// log in the error.
func (d *clDevice) build(src string, opts string) (uintptr, error) {
	b := append([]byte(src), 0)
	ptrs := []uintptr{uintptr(unsafe.Pointer(&b[0]))}
	lens := []uintptr{uintptr(len(src))}
	var errc int32
	prog := d.api.CreateProgramWithSource(d.ctx, 1, &ptrs[0], &lens[0], &errc)
	runtime.KeepAlive(b)
	if errc != clSuccess {
		return 0, &clError{"clCreateProgramWithSource", errc}
	}
	if c := d.api.BuildProgram(prog, 1, &d.dev, opts, 0, 0); c != clSuccess {
		log := d.infoString(func(param uint32, size uintptr, v unsafe.Pointer, ret *uintptr) int32 {
			return d.api.GetProgramBuildInfo(prog, d.dev, param, size, v, ret)
		}, clProgramBuildLog)
		d.api.ReleaseProgram(prog)
		return 0, fmt.Errorf("%w: %s", &clError{"clBuildProgram", c}, log)
	}
	return prog, nil
}

func (d *clDevice) kernel(prog uintptr, name string) (uintptr, error) {
	var errc int32
	k := d.api.CreateKernel(prog, name, &errc)
	if errc != clSuccess {
		return 0, &clError{"clCreateKernel " + name, errc}
	}
	return k, nil
}

// kernelWG is the largest work-group size the device allows for k.
func (d *clDevice) kernelWG(k uintptr) uintptr {
	var n uintptr
	if d.api.GetKernelWorkGroupInfo(k, d.dev, clKernelWorkGroupSize, unsafe.Sizeof(n), unsafe.Pointer(&n), nil) != clSuccess || n == 0 {
		return d.maxWG
	}
	return n
}

// buffer is a device buffer and its size in bytes.
type buffer struct {
	mem  uintptr
	size uintptr
}

func (d *clDevice) alloc(size uintptr) (buffer, error) {
	if size == 0 {
		size = 64
	}
	var errc int32
	m := d.api.CreateBuffer(d.ctx, clMemReadWrite, size, nil, &errc)
	if errc != clSuccess {
		return buffer{}, &clError{fmt.Sprintf("clCreateBuffer(%d bytes)", size), errc}
	}
	return buffer{m, size}, nil
}

func (d *clDevice) free(b *buffer) {
	if b.mem != 0 {
		d.api.ReleaseMemObject(b.mem)
	}
	*b = buffer{}
}

// ensure grows b to at least size bytes, dropping its contents.
func (d *clDevice) ensure(b *buffer, size uintptr) error {
	if b.mem != 0 && b.size >= size {
		return nil
	}
	d.free(b)
	nb, err := d.alloc(max(size, 2*b.size))
	if err != nil {
		return err
	}
	*b = nb
	return nil
}

// grow replaces b by a buffer of size bytes holding b's first keep bytes.
func (d *clDevice) grow(b *buffer, size, keep uintptr) error {
	nb, err := d.alloc(size)
	if err != nil {
		return err
	}
	if keep > 0 && b.mem != 0 {
		if c := d.api.EnqueueCopyBuffer(d.queue, b.mem, nb.mem, 0, 0, min(keep, b.size), 0, nil, nil); c != clSuccess {
			d.free(&nb)
			return &clError{"clEnqueueCopyBuffer", c}
		}
	}
	d.free(b)
	*b = nb
	return nil
}

// write copies the bytes of s to b at byte offset off, blocking.
func write[T any](d *clDevice, b buffer, off uintptr, s []T) error {
	if len(s) == 0 {
		return nil
	}
	size := uintptr(len(s)) * unsafe.Sizeof(s[0])
	c := d.api.EnqueueWriteBuffer(d.queue, b.mem, 1, off, size, unsafe.Pointer(&s[0]), 0, nil, nil)
	runtime.KeepAlive(s)
	return clCheck("clEnqueueWriteBuffer", c)
}

// read copies len(s) elements from b at byte offset off into s, blocking.
func read[T any](d *clDevice, b buffer, off uintptr, s []T) error {
	if len(s) == 0 {
		return nil
	}
	size := uintptr(len(s)) * unsafe.Sizeof(s[0])
	c := d.api.EnqueueReadBuffer(d.queue, b.mem, 1, off, size, unsafe.Pointer(&s[0]), 0, nil, nil)
	runtime.KeepAlive(s)
	return clCheck("clEnqueueReadBuffer", c)
}

func (d *clDevice) zero(b buffer, size uintptr) error {
	var z uint32
	return clCheck("clEnqueueFillBuffer", d.api.EnqueueFillBuffer(d.queue, b.mem, unsafe.Pointer(&z), 4, 0, size, 0, nil, nil))
}

// setArgs sets k's arguments: buffer, int32, uint32 or float32 values.
func (d *clDevice) setArgs(k uintptr, args ...any) error {
	for i, a := range args {
		var c int32
		switch v := a.(type) {
		case buffer:
			m := v.mem
			c = d.api.SetKernelArg(k, uint32(i), unsafe.Sizeof(m), unsafe.Pointer(&m))
		case int32:
			c = d.api.SetKernelArg(k, uint32(i), 4, unsafe.Pointer(&v))
		case uint32:
			c = d.api.SetKernelArg(k, uint32(i), 4, unsafe.Pointer(&v))
		case float32:
			c = d.api.SetKernelArg(k, uint32(i), 4, unsafe.Pointer(&v))
		default:
			return fmt.Errorf("gpuidx: kernel argument %d of type %T", i, a)
		}
		if c != clSuccess {
			return &clError{fmt.Sprintf("clSetKernelArg(%d)", i), c}
		}
	}
	return nil
}

// launch runs k over a 2-D range of global work-items (rounded up to local
// in the first dimension).
func (d *clDevice) launch(k uintptr, global0, global1, local0 int) error {
	g := [2]uintptr{uintptr((global0 + local0 - 1) / local0 * local0), uintptr(global1)}
	l := [2]uintptr{uintptr(local0), 1}
	return clCheck("clEnqueueNDRangeKernel", d.api.EnqueueNDRangeKernel(d.queue, k, 2, nil, &g[0], &l[0], 0, nil, nil))
}

var errClosed = errors.New("gpuidx: index closed")
