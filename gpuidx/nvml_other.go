//go:build !(cgo && linux)

package gpuidx

import "fmt"

// ListGPUs fails: NVML needs cgo, and this build has none.
func ListGPUs() ([]GPUInfo, error) {
	return nil, fmt.Errorf("gpuidx: GPU discovery unavailable in this build (NVML needs cgo on linux): %w", ErrDiscovery)
}
