package storetest

import (
	"context"
	"database/sql"
	"testing"
)

// FillSQLite adds n experiences, each with a random code in space, to the
// SQLite store file at path, which store.Open made: in one statement, so
// that a million take some thirty seconds where PutExperiences takes ten
// times that. They are for benchmarks of what reads many: their texts
// differ only by a number, their ids are 64 hex digits but no content
// hashes (and ascending, so the table is packed tighter than random ids
// would leave it), and the change log logs each, as it does every write.
func FillSQLite(tb testing.TB, path, space string, n int) {
	tb.Helper()
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	var have int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM experiences`).Scan(&have); err != nil {
		tb.Fatal(err)
	}
	// A code (store.CodeSize bytes) is its version byte, 480 bytes of sign
	// bits and a 3-byte scale (here 0.5: 0x3f000000, its low byte dropped).
	_, err = db.ExecContext(ctx, `WITH RECURSIVE s(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM s WHERE i < ?)
		INSERT INTO experiences (id, text, domain, confidence, status, source_model, source_node, trace_id,
			code, space, created_at, updated_at, prior, key_text)
		SELECT printf('%064x', i), 'lesson ' || i || ': close what you open and check the error it returns', 'code.go',
			0.8, 'active', '', '', '', x'01' || randomblob(480) || x'00003f', ?, 1, 1, 0.8, '' FROM s`,
		have+1, have+n, space)
	if err != nil {
		tb.Fatalf("filling %s: %v", path, err)
	}
}
