package gpuidx

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func collect(c prometheus.Collector) []prometheus.Metric {
	ch := make(chan prometheus.Metric, 64)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	var ms []prometheus.Metric
	for m := range ch {
		ms = append(ms, m)
	}
	return ms
}

// TestListGPUs runs where NVML is absent (the usual test machine) as well as
// where it is present: it must fail cleanly, or list GPUs.
func TestListGPUs(t *testing.T) {
	gpus, err := ListGPUs()
	ms := collect(NewGPUCollector())
	if err != nil {
		if !errors.Is(err, ErrDiscovery) {
			t.Fatalf("ListGPUs error %v does not wrap ErrDiscovery", err)
		}
		t.Logf("no GPU discovery here: %v", err)
		if len(ms) != 0 {
			t.Fatalf("collector exported %d series without GPUs", len(ms))
		}
		return
	}
	for _, g := range gpus {
		t.Logf("GPU %d: %s, %d of %d bytes free, utilisation %.2f", g.Index, g.Name, g.MemoryFree, g.MemoryTotal, g.Utilization)
	}
	if len(ms) < 2*len(gpus) {
		t.Fatalf("collector exported %d series for %d GPUs", len(ms), len(gpus))
	}
}

func TestGPUCollectorSeries(t *testing.T) {
	c := gpuCollector{list: func() ([]GPUInfo, error) {
		return []GPUInfo{{Index: 0, Name: "A", MemoryFree: 5, MemoryTotal: 8, Utilization: 0.25}, {Index: 1, Name: "B", Utilization: -1}}, nil
	}}
	if n := len(collect(c)); n != 5 {
		t.Fatalf("%d series, want 5", n)
	}
	c.list = func() ([]GPUInfo, error) { return nil, ErrDiscovery }
	if n := len(collect(c)); n != 0 {
		t.Fatalf("%d series without GPUs", n)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(NewGPUCollector()); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
}
