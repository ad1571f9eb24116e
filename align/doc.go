// Package align maps embeddings from any source model into dso's canonical
// 3840-dimension space: a fitted adapter into the network's reference space
// (ridge regression, orthogonal Procrustes, PCA, or a labelled pad/truncate
// fallback), centring by the reference mean, and a fixed seeded randomised
// Hadamard lift to 3840 dimensions that is identical on every node.
//
// It owns no storage and no network access; fitting takes vectors, not texts.
package align
