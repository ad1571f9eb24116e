// Package store keeps experiences, votes and traces durably: an embedded
// SQLite file by default. A write returns only after it is committed.
package store
