package library

import (
	"bufio"
	"bytes"
	_ "embed"
	"fmt"
	"strconv"
	"strings"
)

// Space is the one embedding space a library lives in: every code in the
// index was made from a vector of this space, and every query is embedded
// in it, so that codes of different models are never compared.
type Space struct {
	// Name identifies the space ("hash:2048", "wordvec:glove.txt.gz",
	// "model:nomic-embed-text"); it is recorded with every code.
	Name string
	// Embedder embeds texts in the space; Model is passed to it.
	Embedder Embedder
	Model    string
}

// anchorText is a small corpus of everyday sentences and questions on
// unrelated topics, written for dso. Embedded in a library's space it gives
// the space its centre (sentence embeddings share a large common
// direction that would otherwise waste the sign bits) and a background of
// texts unrelated to any library, against which relevance is judged.
//
//go:embed anchors/anchors.txt
var anchorText []byte

// Anchors returns the anchor corpus.
func Anchors() []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(anchorText))
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// embedBatch bounds the texts sent to an embedder in one call.
const embedBatch = 64

func anchorID(i int) string { return fmt.Sprintf("anchor-%d", i) }

// anchorIndex is the index of the anchor anchorID named id.
func anchorIndex(id string) int {
	i, _ := strconv.Atoi(strings.TrimPrefix(id, "anchor-"))
	return i
}
