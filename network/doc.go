// Package network owns what a dso node shares with other nodes: its
// identity (an Ed25519 key in the signed-note format of
// golang.org/x/mod/sumdb/note), the canonical, signed records it publishes
// (experiences and votes), and the append-only log of those records per
// network: an RFC 6962 Merkle tree with signed checkpoints (C2SP
// tlog-checkpoint) served as static tiles (C2SP tlog-tiles), plus the
// client side that fetches and verifies another node's log, follows the
// logs its vouches reach (Standings: trust that flows along vouches,
// bounded in depth and weight), admits their experiences (re-embedded,
// aggregated by trust) and weighs their votes (Voting); and witnessing
// (C2SP tlog-witness and tlog-cosignature): a Witness that cosigns other
// logs' checkpoints consistent with what it cosigned before, a
// WitnessedLog that asks a node's witnesses to cosign its checkpoints and
// serves them cosigned, and followers that accept a checkpoint only with
// a quorum of cosignatures.
//
// It does not own the experience library, retrieval or the HTTP routes of
// the proxy: callers mount Handler where they like and decide which
// records to append.
package network
