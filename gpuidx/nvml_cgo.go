//go:build nvml && cgo && linux

package gpuidx

import (
	"fmt"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

var nvmlMu sync.Mutex // NVML's init and shutdown are reference counted; keep listings apart

// ListGPUs lists the NVIDIA GPUs NVML sees. It fails, never panics, where
// the NVIDIA driver (libnvidia-ml) is absent.
func ListGPUs() (gpus []GPUInfo, err error) {
	nvmlMu.Lock()
	defer nvmlMu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			gpus, err = nil, fmt.Errorf("gpuidx: nvml: %v: %w", r, ErrDiscovery)
		}
	}()
	if ret := nvml.Init(); ret != nvml.SUCCESS {
		return nil, fmt.Errorf("gpuidx: nvml init: %s: %w", nvml.ErrorString(ret), ErrDiscovery)
	}
	defer nvml.Shutdown()
	n, ret := nvml.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("gpuidx: nvml device count: %s: %w", nvml.ErrorString(ret), ErrDiscovery)
	}
	for i := range n {
		d, ret := nvml.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("gpuidx: nvml device %d: %s: %w", i, nvml.ErrorString(ret), ErrDiscovery)
		}
		info := GPUInfo{Index: i, Utilization: -1}
		info.Name, _ = d.GetName()
		info.UUID, _ = d.GetUUID()
		if m, ret := d.GetMemoryInfo(); ret == nvml.SUCCESS {
			info.MemoryTotal, info.MemoryFree = m.Total, m.Free
		}
		if u, ret := d.GetUtilizationRates(); ret == nvml.SUCCESS {
			info.Utilization = float64(u.Gpu) / 100
		}
		gpus = append(gpus, info)
	}
	return gpus, nil
}
