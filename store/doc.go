// Package store keeps experiences, votes and traces durably: an embedded
// SQLite file by default ([SQLite]), or a Redis server that several dso
// replicas share ([Redis]). A write returns only after it is committed.
// Both answer every call the same way, with the same sentinel errors; the
// conformance suite in store/storetest holds them to it.
//
// It owns the records and their schema; it does not embed, align, compress,
// index or sign anything. An experience's 484-byte code is stored as opaque
// bytes (see CodeSize) so that the search index can be rebuilt at start with
// [SQLite.EachExperience] without importing the codec here.
//
// # Identity
//
// An experience's ID is a content hash: [ExperienceID] is the lowercase hex
// SHA-256 of a length-prefixed encoding of its normalised domain and text
// ([NormalizeDomain], [NormalizeText]). Storing the same lesson twice, from
// any node, yields the same ID, and [SQLite.PutExperience] returns the
// existing record instead of a second row.
//
// # Durability
//
// The SQLite file runs in WAL mode with synchronous=FULL: every commit
// fsyncs the write-ahead log before it returns, so a method that returned
// nil has written data that survives a process crash and a power cut. (WAL
// with synchronous=NORMAL would survive only a process crash: the last
// commits could be rolled back after a power loss.) Traces are the one
// exception: [SQLite.PutTrace] and [SQLite.PutTraces] commit with
// synchronous=NORMAL, so a trace survives a process crash at once and a
// power cut once a later write or a checkpoint syncs the log; no one is
// told a trace is durable, and the sync was most of what a small batch of
// traces cost. Writes go through a single connection, so writers in this
// process queue in Go instead of spinning on SQLITE_BUSY; reads use a
// separate pool of read-only connections and never wait for writers. busy_timeout covers other
// processes opening the same file.
//
// # Schema
//
// The schema version is SQLite's user_version. [Open] applies the missing
// migrations, in order, in one transaction; a file written by a newer dso
// is refused with [ErrSchemaTooNew].
//
// # Redis
//
// [OpenRedis] connects to a Redis server; every write is one Lua script,
// so a record, the sets that index it and its change log entry land
// together, and votes are counted once per voter however many replicas
// write at once. The change log is a stream with consecutive integer entry
// ids, followed with [Redis.Changes] like SQLite's and waited on with
// [Redis.WaitChanges]. Calls that cannot reach the server, or run past the
// store's timeout, fail with an error wrapping [ErrUnavailable]: nothing
// was acknowledged. What an acknowledged write survives depends on the
// server's appendonly and appendfsync settings, which OpenRedis reads and
// logs ([Redis.Durability]).
//
// # Concurrency
//
// A [*SQLite] and a [*Redis] are safe for concurrent use by multiple
// goroutines.
package store
