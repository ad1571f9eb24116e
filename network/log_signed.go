package network

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// signedSchema keeps the latest vouch and vote the log holds per subject
// (a key vouched for, an experience voted on), so that the same one is
// not signed again.
const signedSchema = `
CREATE TABLE IF NOT EXISTS signed (subject BLOB PRIMARY KEY, value INTEGER NOT NULL, idx INTEGER NOT NULL);
`

// Vouch makes the log's vouches on network those for keys: it signs,
// with the log's key, a vouch for each key the log does not vouch for yet
// (or revoked), and a revocation of each key it vouched for that keys no
// longer names (a peer taken out of the configuration), and appends them;
// it returns how many it added. Vouching again for the same keys is a
// no-op.
func (l *Log) Vouch(ctx context.Context, network string, keys []string, now time.Time) (int, error) {
	var rs []Record
	var subjects [][]byte
	named := map[string]bool{}
	for _, k := range keys {
		named[k] = true
		rs = append(rs, Record{Vouch: &Vouch{Network: network, Key: k, Time: now}})
		subjects = append(subjects, vouchSubject(network, k))
	}
	held, err := l.vouched(ctx, network)
	if err != nil {
		return 0, err
	}
	for _, k := range held {
		if !named[k] {
			rs = append(rs, Record{Vouch: &Vouch{Network: network, Key: k, Revoked: true, Time: now}})
			subjects = append(subjects, vouchSubject(network, k))
		}
	}
	return l.appendSigned(ctx, rs, subjects, func(r Record) int64 {
		if r.Vouch.Revoked {
			return 0
		}
		return 1
	})
}

func vouchSubject(network, key string) []byte { return []byte("vouch\x00" + network + "\x00" + key) }

// vouched returns the keys the log vouches for on network now.
func (l *Log) vouched(ctx context.Context, network string) ([]string, error) {
	prefix := string(vouchSubject(network, ""))
	rows, err := l.db.QueryContext(ctx, `SELECT subject FROM signed WHERE value = 1 AND substr(subject, 1, ?) = ? ORDER BY subject`, len(prefix), []byte(prefix))
	if err != nil {
		return nil, fmt.Errorf("network: vouched: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s []byte
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("network: vouched: %w", err)
		}
		out = append(out, string(s[len(prefix):]))
	}
	return out, rows.Err()
}

// Vote signs, with the log's key, each vote whose grade differs from the
// one the log holds for its experience, and appends them; it returns how
// many it added. The latest vote of a node counts, so offering the
// node's current grades as often as one likes is safe.
func (l *Log) Vote(ctx context.Context, votes []Vote) (int, error) {
	var rs []Record
	var subjects [][]byte
	for i := range votes {
		v := votes[i]
		rs = append(rs, Record{Vote: &v})
		subjects = append(subjects, append([]byte("vote\x00"+v.Network+"\x00"), v.Experience[:]...))
	}
	return l.appendSigned(ctx, rs, subjects, func(r Record) int64 { return int64(r.Vote.Grade) })
}

// appendSigned signs and appends those of rs whose value differs from the
// one the log holds for their subject, in batches of MaxAppend.
func (l *Log) appendSigned(ctx context.Context, rs []Record, subjects [][]byte, value func(Record) int64) (int, error) {
	l.appending.Lock()
	defer l.appending.Unlock()
	added := 0
	for len(rs) > 0 {
		n := min(len(rs), MaxAppend)
		batch, subs := rs[:n], subjects[:n]
		rs, subjects = rs[n:], subjects[n:]
		var records [][]byte
		var keep [][]byte
		var values []int64
		seen := map[string]bool{}
		for i, r := range batch {
			if seen[string(subs[i])] {
				continue
			}
			seen[string(subs[i])] = true
			var held int64
			err := l.db.QueryRowContext(ctx, `SELECT value FROM signed WHERE subject = ?`, subs[i]).Scan(&held)
			switch {
			case err == nil && held == value(r):
				continue
			case err != nil && !errors.Is(err, sql.ErrNoRows):
				return added, fmt.Errorf("network: sign: %w", err)
			}
			signed, err := Sign(l.signer, r)
			if err != nil {
				return added, fmt.Errorf("network: sign: %w", err)
			}
			b, err := Encode(signed)
			if err != nil {
				return added, fmt.Errorf("network: sign: %w", err)
			}
			records, keep, values = append(records, b), append(keep, subs[i]), append(values, value(r))
		}
		if len(records) == 0 {
			continue
		}
		_, err := l.appendLocked(ctx, records, make([]*[32]byte, len(records)), func(tx *sql.Tx, first int64) error {
			for i := range keep {
				if _, err := tx.ExecContext(ctx, `INSERT INTO signed (subject, value, idx) VALUES (?, ?, ?)
					ON CONFLICT (subject) DO UPDATE SET value = excluded.value, idx = excluded.idx`,
					keep[i], values[i], first+int64(i)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return added, err
		}
		added += len(records)
	}
	return added, nil
}
