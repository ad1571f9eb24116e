package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/dso-proxy/dso/network"
	"golang.org/x/mod/sumdb/note"
)

func init() {
	commands["verify"] = command{
		summary: "check that a record is in a node's log, against its signed checkpoint",
		args:    "--key VKEY --log URL|DIR [--index N] [--record FILE] [--author VKEY]... [--origin ORIGIN]",
		about:   verifyAbout,
		run:     verifyCmd,
	}
}

const verifyAbout = `Fetches the log's checkpoint and checks its signature with VKEY (the
verifier key dso keygen printed), then proves that the record is entry N of
the tree it signs, with hashes fetched from the log's tiles, and checks the
record's own signature. With --record and no --index, the log's entries are
searched for it; with --index and no --record, the entry is fetched.

--log is the log's URL (https://node.example/log/NETWORK) or a directory
holding the same files (checkpoint, tile/...). --author adds keys the
record may be signed by (default: the log's own key). --origin requires the
checkpoint to name that log (NODE/NETWORK).`

// verifyFetchTimeout bounds each fetch of verify.
const verifyFetchTimeout = 30 * time.Second

// verifyMaxScan bounds the entries searched for a record without --index.
const verifyMaxScan = 1 << 20

func verifyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("verify")
	key := fs.String("key", "", "the log author's verifier key `VKEY`, as dso keygen printed it")
	logLoc := fs.String("log", "", "the log's `URL`, or a directory holding its files")
	index := fs.Int64("index", -1, "the record's entry `N` in the log")
	recordFile := fs.String("record", "", "the record `FILE` to prove (without --index: searched for)")
	origin := fs.String("origin", "", "require the checkpoint to name this log (`NODE/NETWORK`)")
	var authors stringList
	fs.Var(&authors, "author", "another verifier key `VKEY` the record may be signed by; repeatable")
	if err := parseFlags(fs, args, stdout, stderr, "key", "log"); err != nil {
		return err
	}
	if *index < 0 && *recordFile == "" {
		return usageError(stderr, fs.Name(), "missing required flag --index or --record")
	}
	v, err := note.NewVerifier(*key)
	if err != nil {
		return fmt.Errorf("--key: %w", err)
	}
	known := []note.Verifier{v}
	for _, a := range authors {
		av, err := note.NewVerifier(a)
		if err != nil {
			return fmt.Errorf("--author %s: %w", a, err)
		}
		known = append(known, av)
	}
	var record []byte
	if *recordFile != "" {
		if record, err = readRecordFile(*recordFile); err != nil {
			return err
		}
	}
	f := fetcherFor(*logLoc)
	c, _, err := network.FetchCheckpoint(ctx, f, v, *origin)
	if err != nil {
		return err
	}
	if *index < 0 {
		if *index, err = findEntry(ctx, f, c, record); err != nil {
			return err
		}
	} else if record == nil {
		entries, err := network.FetchEntries(ctx, f, c, *index, min(*index+1, c.Size))
		if err != nil {
			return err
		}
		if len(entries) != 1 {
			return fmt.Errorf("%w: index %d of a log of %d", network.ErrNotIncluded, *index, c.Size)
		}
		record = entries[0]
	}
	if err := network.ProveInclusion(ctx, f, c, *index, record); err != nil {
		return err
	}
	r, err := network.Open(record, note.VerifierList(known...))
	if err != nil {
		return fmt.Errorf("entry %d is in the log, but: %w", *index, err)
	}
	fmt.Fprintf(stdout, "ok: entry %d of %s (size %d, root %s): %s signed by %s+%08x\n",
		*index, c.Origin, c.Size, c.Hash, describe(r), r.Author, r.KeyHash)
	return nil
}

func readRecordFile(file string) ([]byte, error) {
	fh, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, network.MaxRecordLen+1))
	if err != nil {
		return nil, err
	}
	if len(b) > network.MaxRecordLen {
		return nil, fmt.Errorf("%s: %w", file, network.ErrTooLarge)
	}
	return b, nil
}

// fetcherFor reads a log from a URL or from a directory.
func fetcherFor(loc string) network.Fetcher {
	if strings.HasPrefix(loc, "http://") || strings.HasPrefix(loc, "https://") {
		return network.HTTPFetcher{Base: loc, Client: &http.Client{Timeout: verifyFetchTimeout}}
	}
	return network.DirFetcher(loc)
}

// findEntry searches the log's entries for record, one bundle at a time.
func findEntry(ctx context.Context, f network.Fetcher, c network.Checkpoint, record []byte) (int64, error) {
	const batch = 256
	for start := int64(0); start < c.Size; start += batch {
		if start >= verifyMaxScan {
			return 0, fmt.Errorf("record not among the first %d entries; give --index", verifyMaxScan)
		}
		entries, err := network.FetchEntries(ctx, f, c, start, min(start+batch, c.Size))
		if err != nil {
			return 0, err
		}
		for i, e := range entries {
			if bytes.Equal(e, record) {
				return start + int64(i), nil
			}
		}
	}
	return 0, fmt.Errorf("%w: record not among the log's %d entries", network.ErrNotIncluded, c.Size)
}

// describe names a record in one line, without its text.
func describe(r network.Record) string {
	switch {
	case r.Experience != nil:
		return fmt.Sprintf("experience in %s/%s", r.Experience.Network, r.Experience.Domain)
	case r.Vote != nil:
		return fmt.Sprintf("vote %+d on %x in %s", r.Vote.Grade, r.Vote.Experience[:8], r.Vote.Network)
	case r.Vouch != nil && r.Vouch.Revoked:
		return fmt.Sprintf("vouch for %s revoked in %s", r.Vouch.Key, r.Vouch.Network)
	case r.Vouch != nil:
		return fmt.Sprintf("vouch for %s in %s", r.Vouch.Key, r.Vouch.Network)
	}
	return "record"
}
