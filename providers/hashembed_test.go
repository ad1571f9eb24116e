package providers

import (
	"context"
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
