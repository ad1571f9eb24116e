package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dso-proxy/dso/compress"
	"github.com/dso-proxy/dso/network"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// attacker is a dishonest node of the network test: an HTTP server of a
// log at /log/hanzo/ whose content the test swaps. It serves nothing (404,
// "no checkpoint yet") until set.
type attacker struct {
	id  network.Identity
	url string

	mu  sync.Mutex // protects src
	src network.TileSource
}

func newAttacker(t *testing.T, name string) *attacker {
	t.Helper()
	id, err := network.GenerateKey(filepath.Join(t.TempDir(), name+".key"), name)
	if err != nil {
		t.Fatal(err)
	}
	a := &attacker{id: id}
	srv := httptest.NewServer(http.StripPrefix("/log/hanzo", network.NewHandler(a, nil)))
	t.Cleanup(srv.Close)
	a.url = srv.URL
	return a
}

// peer is the YAML of a peer following a's log.
func (a *attacker) peer() string { return peerOf(a.url, a.id.VerifierKey) }

func (a *attacker) set(src network.TileSource) {
	a.mu.Lock()
	a.src = src
	a.mu.Unlock()
}

func (a *attacker) get() network.TileSource {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.src
}

func (a *attacker) Checkpoint(ctx context.Context) ([]byte, error) {
	if src := a.get(); src != nil {
		return src.Checkpoint(ctx)
	}
	return nil, network.ErrNotFound
}

func (a *attacker) ReadTile(ctx context.Context, t tlog.Tile) ([]byte, error) {
	if src := a.get(); src != nil {
		return src.ReadTile(ctx, t)
	}
	return nil, network.ErrNotFound
}

// log opens a log of a's own, signed by its key, holding records (each
// signed by that key: network.Log refuses others).
func (a *attacker) log(t *testing.T, records ...network.Record) *network.Log {
	t.Helper()
	ctx := context.Background()
	l, err := network.OpenLog(ctx, network.LogConfig{Path: filepath.Join(t.TempDir(), "log.db"),
		Origin: network.Origin(a.id.Signer.Name(), "hanzo"), Identity: a.id})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	for _, r := range records {
		if _, err := l.Append(ctx, signed(t, a.id.Signer, r)); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// signed is r signed by s, encoded.
func signed(t *testing.T, s note.Signer, r network.Record) []byte {
	t.Helper()
	r, err := network.Sign(s, r)
	if err != nil {
		t.Fatal(err)
	}
	b, err := network.Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// lesson is a record of an experience of network netID.
func lesson(netID, text string) network.Record {
	return network.Record{Experience: &network.Experience{Network: netID, Domain: "code.go", Text: text, Confidence: 0.9,
		Time: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}}
}

// randomCode is a well-formed BitDelta code of no text.
func randomCode(t *testing.T, seed uint64) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, seed))
	c := compress.Code{Scale: 0.01}
	for i := range c.Bits {
		c.Bits[i] = r.Uint64()
	}
	b, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// craftedLog is a log of any entries, valid records or not, with its tree
// and a checkpoint signed by signer: what network.Log would refuse to
// write, served as a log is.
type craftedLog struct {
	signer  note.Signer
	origin  string
	entries [][]byte
	hashes  []tlog.Hash
}

func newCraftedLog(t *testing.T, signer note.Signer, origin string, entries ...[]byte) *craftedLog {
	t.Helper()
	l := &craftedLog{signer: signer, origin: origin}
	for _, e := range entries {
		hs, err := tlog.StoredHashes(int64(len(l.entries)), e, tlog.HashReaderFunc(l.readHashes))
		if err != nil {
			t.Fatal(err)
		}
		l.entries, l.hashes = append(l.entries, e), append(l.hashes, hs...)
	}
	return l
}

func (l *craftedLog) readHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x < 0 || x >= int64(len(l.hashes)) {
			return nil, network.ErrNotFound
		}
		out[i] = l.hashes[x]
	}
	return out, nil
}

func (l *craftedLog) Checkpoint(context.Context) ([]byte, error) {
	n := int64(len(l.entries))
	h, err := tlog.TreeHash(n, tlog.HashReaderFunc(l.readHashes))
	if err != nil {
		return nil, err
	}
	return network.SignCheckpoint(l.signer, network.Checkpoint{Origin: l.origin, Size: n, Hash: h})
}

func (l *craftedLog) ReadTile(_ context.Context, t tlog.Tile) ([]byte, error) {
	// A tile of level L covers 256^L leaves a hash; entry bundles are level 0's.
	have := int64(len(l.entries)) >> (8 * max(t.L, 0))
	if t.N*256+int64(t.W) > have {
		return nil, fmt.Errorf("%w: %+v", network.ErrNotFound, t)
	}
	if t.L != network.EntriesLevel {
		return tlog.ReadTileData(t, tlog.HashReaderFunc(l.readHashes))
	}
	var out []byte
	for _, e := range l.entries[t.N*256 : t.N*256+int64(t.W)] {
		out = binary.BigEndian.AppendUint16(out, uint16(len(e)))
		out = append(out, e...)
	}
	return out, nil
}

// oldCheckpoint serves a log's tiles under a checkpoint it signed before:
// a replayed, rolled-back view of it.
type oldCheckpoint struct {
	network.TileSource
	msg []byte
}

func (o oldCheckpoint) Checkpoint(context.Context) ([]byte, error) { return o.msg, nil }
