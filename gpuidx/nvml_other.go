//go:build !(nvml && cgo && linux)

package gpuidx

import "fmt"

// ListGPUs fails: NVML discovery is built only with -tags nvml (and cgo,
// on linux), because compiling go-nvml prints a hundred lines of cgo
// deprecation warnings on every cold build. The GPU index itself needs
// none of it: it reaches OpenCL at run time.
func ListGPUs() ([]GPUInfo, error) {
	return nil, fmt.Errorf("gpuidx: GPU discovery unavailable in this build (build with -tags nvml, cgo on linux): %w", ErrDiscovery)
}
