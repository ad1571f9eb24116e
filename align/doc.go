// Package align maps embeddings from any source model into dso's canonical
// 3840-dimension space: a fitted adapter into the network's reference space
// (ridge regression, orthogonal Procrustes, PCA, or a labelled pad/truncate
// fallback), centring by the reference mean, and a fixed seeded randomised
// Hadamard lift to 3840 dimensions that is identical on every node.
//
// A [Pipeline] chains the three steps. Adapters are fitted with [FitRidge]
// (regulariser chosen by [SelectLambda]) or [FitProcrustes] from anchor pairs,
// or built as fallbacks ([FitPCA], [PadTruncate]), and saved in a versioned,
// checksummed file ([Adapter.WriteTo], [ReadAdapter]).
//
// It owns no storage and no network access; fitting takes vectors, not texts.
package align
