// Package gpuidx is the in-memory search index over BitDelta codes: a
// contiguous store of codes, a Hamming scan (prefix first, then the full
// code), exact re-ranking against the float query, filters applied during the
// scan, and snapshots to disk. The CPU backend is the default; a GPU backend
// plugs in behind the same methods.
package gpuidx
