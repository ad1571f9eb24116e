// Package gpuidx is the in-memory search index over BitDelta codes: a
// contiguous store of codes, a Hamming scan (prefix first, then the full
// code), an inverted file over binary centroids that a large index searches
// instead of scanning every prefix, exact re-ranking against the float
// query, filters applied during the search, and snapshots to disk. The CPU
// backend is the default; a GPU backend plugs in behind the same methods.
package gpuidx
