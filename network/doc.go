// Package network owns what a dso node shares with other nodes: its
// identity (an Ed25519 key in the signed-note format of
// golang.org/x/mod/sumdb/note), the canonical, signed records it publishes
// (experiences and votes), and the append-only log of those records per
// network: an RFC 6962 Merkle tree with signed checkpoints (C2SP
// tlog-checkpoint) served as static tiles (C2SP tlog-tiles), plus the
// client side that fetches and verifies another node's log.
//
// It does not own the experience library, retrieval or the HTTP routes of
// the proxy: callers mount Handler where they like and decide which
// records to append.
package network
