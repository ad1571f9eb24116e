package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	"github.com/dso-proxy/dso/compress"
	"github.com/dso-proxy/dso/library"
)

// textSource makes the bench's codes of real embeddings: sentences,
// recombined, embedded by a library opened as serve opens it.
type textSource struct {
	lib     *library.Library
	vectors string
	base    []string   // the sentences recombined into experiences
	words   [][]string // base's words
	held    []string   // sentences held out of base: the queries
}

// heldOut is the share of the sentences kept for queries.
const heldOut = 10

func openTextSource(ctx context.Context, vectors, texts string) (*textSource, func(), error) {
	all, err := readAnchors(texts)
	if err != nil {
		return nil, nil, err
	}
	slices.Sort(all)
	all = slices.Compact(all)
	if len(all) < 2*heldOut {
		return nil, nil, fmt.Errorf("bench index: %s holds %d distinct sentences, want at least %d", texts, len(all), 2*heldOut)
	}
	r := benchRand(3)
	for i := len(all) - 1; i > 0; i-- {
		j := int(r.next() % uint64(i+1))
		all[i], all[j] = all[j], all[i]
	}
	h := len(all) / heldOut
	s := &textSource{vectors: vectors, held: all[:h], base: all[h:]}
	for _, t := range s.base {
		s.words = append(s.words, strings.Fields(t))
	}
	lib, _, closeLib, err := openEvalLibrary(ctx, evalLibraryConfig(vectors))
	if err != nil {
		return nil, nil, err
	}
	if err := lib.Prepare(ctx); err != nil {
		closeLib()
		return nil, nil, err
	}
	s.lib = lib
	return s, closeLib, nil
}

func (s *textSource) name() string { return "wordvec:" + s.vectors }

// sentence is experience i's text: a base sentence itself for the first
// ones, then most of one sentence's words with a few of another's, as
// texts on one topic vary.
func (s *textSource) sentence(i int) string {
	if i < len(s.base) {
		return s.base[i]
	}
	r := benchRand(i)
	a := s.words[r.next()%uint64(len(s.words))]
	out := make([]string, 0, len(a)+3)
	for _, w := range a {
		if r.next()%10 < 7 {
			out = append(out, w)
		}
	}
	b := s.words[r.next()%uint64(len(s.words))]
	for k := r.next()%3 + 1; k > 0 && len(b) > 0; k-- {
		out = append(out, b[r.next()%uint64(len(b))])
	}
	if len(out) == 0 {
		out = a
	}
	return strings.Join(out, " ")
}

func (s *textSource) codes(ctx context.Context, lo, hi int) ([]compress.Code, error) {
	texts := make([]string, 0, hi-lo)
	for i := lo; i < hi; i++ {
		texts = append(texts, s.sentence(i))
	}
	return s.encode(ctx, texts)
}

func (s *textSource) encode(ctx context.Context, texts []string) ([]compress.Code, error) {
	vs, err := s.lib.Vectors(ctx, texts)
	if err != nil {
		return nil, err
	}
	out := make([]compress.Code, len(vs))
	for i, v := range vs {
		if out[i], err = compress.Encode(v); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *textSource) queries(ctx context.Context, n int) ([][]float32, error) {
	texts := make([]string, n)
	for i := range texts {
		texts[i] = s.held[i%len(s.held)]
	}
	return s.lib.Vectors(ctx, texts)
}

// settledRSS is the process's resident memory after a collection has
// returned what it could to the system; 0 where /proc is not there.
func settledRSS() int64 {
	runtime.GC()
	debug.FreeOSMemory()
	return selfStatus("VmRSS")
}

// peakRSS is the process's resident high-water mark; 0 where /proc is not
// there.
func peakRSS() int64 { return selfStatus("VmHWM") }

// selfStatus is procStatus of this process, 0 where it cannot be read.
func selfStatus(field string) int64 {
	n, _, _ := procStatus("/proc/self/status", field)
	return n
}

// procStatus reads a kB field (VmRSS, VmHWM) of a /proc status file, in
// bytes; found is false when the file has no such field.
func procStatus(path, field string) (n int64, found bool, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err == nil {
				return kb << 10, true, nil
			}
		}
	}
	return 0, false, nil
}
