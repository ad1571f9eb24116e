package gpuidx

import (
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrDiscovery means the GPUs cannot be listed: no NVIDIA driver, or a
// build without cgo.
var ErrDiscovery = errors.New("gpuidx: GPU discovery unavailable")

// GPUInfo is one GPU as NVML reports it.
type GPUInfo struct {
	Index       int
	Name        string
	UUID        string
	MemoryTotal uint64 // bytes
	MemoryFree  uint64 // bytes
	// Utilization is the share of the last sample period in which a kernel
	// ran, 0 to 1; -1 when the driver does not say.
	Utilization float64
}

// NewGPUCollector returns a Prometheus collector of each GPU's free memory
// (dso_gpu_memory_free_bytes) and utilisation (dso_gpu_utilization_ratio),
// labelled by index, name and uuid. It exports no series where GPUs cannot
// be listed.
func NewGPUCollector() prometheus.Collector { return gpuCollector{list: ListGPUs} }

var (
	gpuLabels  = []string{"gpu", "name", "uuid"}
	descGPUMem = prometheus.NewDesc("dso_gpu_memory_free_bytes", "Free memory of the GPU in bytes.", gpuLabels, nil)
	descGPUTot = prometheus.NewDesc("dso_gpu_memory_total_bytes", "Total memory of the GPU in bytes.", gpuLabels, nil)
	descGPUUse = prometheus.NewDesc("dso_gpu_utilization_ratio", "Share of the last sample period in which a GPU kernel ran.", gpuLabels, nil)
)

type gpuCollector struct {
	list func() ([]GPUInfo, error)
}

func (gpuCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descGPUMem
	ch <- descGPUTot
	ch <- descGPUUse
}

func (c gpuCollector) Collect(ch chan<- prometheus.Metric) {
	gpus, err := c.list()
	if err != nil {
		return
	}
	for _, g := range gpus {
		l := []string{strconv.Itoa(g.Index), g.Name, g.UUID}
		ch <- prometheus.MustNewConstMetric(descGPUMem, prometheus.GaugeValue, float64(g.MemoryFree), l...)
		ch <- prometheus.MustNewConstMetric(descGPUTot, prometheus.GaugeValue, float64(g.MemoryTotal), l...)
		if g.Utilization >= 0 {
			ch <- prometheus.MustNewConstMetric(descGPUUse, prometheus.GaugeValue, g.Utilization, l...)
		}
	}
}
