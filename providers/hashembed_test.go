package providers

import (
	"context"
	"math"
	"testing"
)

func TestHashEmbedder(t *testing.T) {
	h := NewHashEmbedder(512, 1)
	v, err := h.Embed(context.Background(), []string{"a man plays the guitar", "a man is playing a guitar", "stocks fell sharply today", ""})
	if err != nil {
		t.Fatal(err)
	}
	if len(v[0]) != 512 || h.Dim() != 512 {
		t.Fatalf("dim %d", len(v[0]))
	}
	if !(cos(v[0], v[1]) > cos(v[0], v[2])+0.2) {
		t.Fatalf("similar %.3f, unrelated %.3f", cos(v[0], v[1]), cos(v[0], v[2]))
	}
	for _, x := range v[3] {
		if x != 0 {
			t.Fatal("empty text embeds to non-zero")
		}
	}
	again, _ := NewHashEmbedder(512, 1).Embed(context.Background(), []string{"a man plays the guitar"})
	other, _ := NewHashEmbedder(512, 2).Embed(context.Background(), []string{"a man plays the guitar"})
	for i := range again[0] {
		if again[0][i] != v[0][i] {
			t.Fatal("same seed gives a different embedding")
		}
	}
	if cos(other[0], v[0]) > 0.5 {
		t.Fatal("different seeds give nearly the same embedding")
	}
}

func BenchmarkHashEmbed(b *testing.B) {
	h := NewHashEmbedder(2048, 1)
	texts := []string{"A man with a hard hat is dancing."}
	b.ReportAllocs()
	for b.Loop() {
		h.Embed(context.Background(), texts)
	}
}

// referenceEmbed is HashEmbedder's definition, written the plain way (each
// feature's string built and hashed): the embedder must give exactly its
// vectors, since stored codes were made with them.
func referenceEmbed(h *HashEmbedder, t string) []float32 {
	v := make([]float32, h.dim)
	var total float32
	add := func(feature string, w float32) {
		x := hash64(h.seed, feature)
		b := int(x % uint64(h.dim))
		if x>>63 != 0 {
			w = -w
		}
		v[b] += w
		total += float32(math.Abs(float64(w)))
	}
	for _, tok := range Tokenize(t) {
		add("w:"+tok, wordWeight)
		rs := []rune("<" + tok + ">")
		for n := 3; n <= 5; n++ {
			for j := 0; j+n <= len(rs); j++ {
				add(string(rs[j:j+n]), 1)
			}
		}
	}
	if total > 0 {
		for k := range v {
			v[k] /= total
		}
	}
	return v
}

func checkReference(t *testing.T, h *HashEmbedder, texts []string) {
	t.Helper()
	got, err := h.Embed(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	for i, text := range texts {
		want := referenceEmbed(h, text)
		for k := range want {
			if math.Float32bits(got[i][k]) != math.Float32bits(want[k]) {
				t.Fatalf("%q: coordinate %d is %v; the definition gives %v", text, k, got[i][k], want[k])
			}
		}
	}
}

func TestHashEmbedderMatchesItsDefinition(t *testing.T) {
	checkReference(t, NewHashEmbedder(384, 7), []string{
		"a man plays the guitar", "Don't close it's file!", "naïve café — 37°C in °F?",
		"日本語のテキスト", "invalid \xff\xfe utf-8 \xed\xa0\x80 bytes", "", "x", "emoji 🎸🎸 and\tTabs\nnewlines",
	})
}

func FuzzHashEmbedder(f *testing.F) {
	for _, s := range []string{"a man plays the guitar", "café \xff", "日本"} {
		f.Add(s)
	}
	h := NewHashEmbedder(97, 3)
	f.Fuzz(func(t *testing.T, s string) { checkReference(t, h, []string{s, s + " " + s}) })
}
