package gpuidx

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/dso-proxy/dso/compress"
)

func TestOpen(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	absent := GPUConfig{Library: "libOpenCL-absent.so.9"}

	idx, err := Open("cpu", CPUConfig{}, absent, log)
	if _, ok := idx.(*CPU); err != nil || !ok {
		t.Fatalf("cpu: %T, %v", idx, err)
	}
	if _, err := Open("gpu", CPUConfig{}, absent, log); !errors.Is(err, ErrNoGPU) {
		t.Fatalf("gpu without OpenCL: %v", err)
	}
	idx, err = Open("auto", CPUConfig{}, absent, log)
	if _, ok := idx.(*CPU); err != nil || !ok {
		t.Fatalf("auto without OpenCL: %T, %v", idx, err)
	}
	if !strings.Contains(logs.String(), "using the CPU index") {
		t.Fatalf("auto did not say why it fell back: %q", logs.String())
	}
	if _, err := Open("tpu", CPUConfig{}, absent, log); err == nil {
		t.Fatal("unknown kind accepted")
	}

	// A snapshot loads into either kind.
	r := gpuRand(20)
	c, _ := compress.Encode(r.vector())
	x := NewCPU(CPUConfig{})
	x.Upsert("a", Meta{Domain: "code"}, c)
	var snap bytes.Buffer
	x.Save(&snap)
	idx, err = LoadIndex("auto", bytes.NewReader(snap.Bytes()), CPUConfig{}, absent, log)
	if err != nil || idx.Len() != 1 {
		t.Fatalf("LoadIndex auto: %v", err)
	}

	needGPU(t)
	idx, err = Open("auto", CPUConfig{}, testGPUConfig, log)
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()
	if _, ok := idx.(*GPU); !ok {
		t.Fatalf("auto with OpenCL opened %T", idx)
	}
	gi, err := LoadIndex("gpu", bytes.NewReader(snap.Bytes()), CPUConfig{}, testGPUConfig, log)
	if err != nil {
		t.Fatal(err)
	}
	defer gi.Close()
	hits, err := gi.Search(context.Background(), Query{Code: &c, Domain: "code", Mode: ModeFull})
	if err != nil || len(hits) != 1 || hits[0].ID != "a" || hits[0].Distance != 0 {
		t.Fatalf("loaded GPU index: %v, %v", hits, err)
	}
}
