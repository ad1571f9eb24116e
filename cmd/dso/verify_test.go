package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/network"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// testLog makes a node key and a log of n signed experiences, served on
// loopback under /log/hanzo; it returns the log's URL, its verifier key
// and the records.
func testLog(t *testing.T, n int) (url, vkey string, records [][]byte, l *network.Log) {
	t.Helper()
	dir := t.TempDir()
	id, err := network.GenerateKey(filepath.Join(dir, "node.key"), "nodeA")
	if err != nil {
		t.Fatal(err)
	}
	l, err = network.OpenLog(context.Background(), network.LogConfig{Path: filepath.Join(dir, "log.db"), Origin: network.Origin("nodeA", "hanzo"), Identity: id})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		r, err := network.Sign(id.Signer, network.Record{Experience: &network.Experience{Network: "hanzo", Domain: "code.go",
			Text: fmt.Sprintf("Lesson %d.", i), Confidence: 0.9, Time: t0.Add(time.Duration(i) * time.Minute)}})
		if err != nil {
			t.Fatal(err)
		}
		b, err := network.Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		records = append(records, b)
	}
	if _, err := l.Append(context.Background(), records...); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/log/hanzo/", http.StripPrefix("/log/hanzo", network.NewHandler(l, nil)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/log/hanzo", id.VerifierKey, records, l
}

// mirrorToDir copies the checkpoint and every tile of the log at url into
// a directory laid out as the URL paths.
func mirrorToDir(t *testing.T, url, vkey string) string {
	t.Helper()
	ctx := context.Background()
	f := network.HTTPFetcher{Base: url}
	v, _ := note.NewVerifier(vkey)
	c, msg, err := network.FetchCheckpoint(ctx, f, v, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(p string, data []byte) {
		file := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("checkpoint", msg)
	for _, tile := range tlog.NewTiles(8, 0, c.Size) {
		paths := []string{network.TilePath(tile)}
		if tile.L == 0 {
			e := tile
			e.L = network.EntriesLevel
			paths = append(paths, network.TilePath(e))
		}
		for _, p := range paths {
			data, err := f.Fetch(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			write(p, data)
		}
	}
	return dir
}

func TestVerify(t *testing.T) {
	url, vkey, records, _ := testLog(t, 300)
	dir := t.TempDir()
	recFile := filepath.Join(dir, "r.bin")
	if err := os.WriteFile(recFile, records[270], 0o644); err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(records[270])
	tampered[12] ^= 1
	badFile := filepath.Join(dir, "bad.bin")
	if err := os.WriteFile(badFile, tampered, 0o644); err != nil {
		t.Fatal(err)
	}
	_, otherKey, _, _ := testLog(t, 1)
	mirror := mirrorToDir(t, url, vkey)
	for _, tt := range []struct {
		name string
		args []string
		code int
		out  string // in stdout (code 0) or stderr
	}{
		{"index and record", []string{"--key", vkey, "--log", url, "--index", "270", "--record", recFile}, 0, "ok: entry 270 of nodeA/hanzo (size 300"},
		{"record found", []string{"--key", vkey, "--log", url, "--record", recFile}, 0, "ok: entry 270"},
		{"index fetched", []string{"--key", vkey, "--log", url, "--index", "5"}, 0, "ok: entry 5"},
		{"from files", []string{"--key", vkey, "--log", mirror, "--index", "270", "--record", recFile}, 0, "ok: entry 270"},
		{"origin", []string{"--key", vkey, "--log", url, "--index", "0", "--origin", "nodeA/hanzo"}, 0, "ok: entry 0"},
		{"wrong origin", []string{"--key", vkey, "--log", url, "--index", "0", "--origin", "nodeA/other"}, 1, "another log"},
		{"wrong index", []string{"--key", vkey, "--log", url, "--index", "271", "--record", recFile}, 1, "not included"},
		{"past the end", []string{"--key", vkey, "--log", url, "--index", "300"}, 1, "not included"},
		{"tampered record", []string{"--key", vkey, "--log", url, "--index", "270", "--record", badFile}, 1, "not included"},
		{"tampered record search", []string{"--key", vkey, "--log", mirror, "--record", badFile}, 1, "not included"},
		{"another key", []string{"--key", otherKey, "--log", url, "--index", "0"}, 1, "not signed by the log's key"},
		{"no log", []string{"--key", vkey, "--index", "0"}, 2, "usage"},
		{"no record or index", []string{"--key", vkey, "--log", url}, 2, "usage"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"verify"}, tt.args...), &stdout, &stderr)
			if code != tt.code {
				t.Fatalf("exit %d; want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout.String(), stderr.String())
			}
			got := stdout.String()
			if code != 0 {
				got = stderr.String()
			}
			if !strings.Contains(got, tt.out) {
				t.Errorf("output %q; want it to contain %q", got, tt.out)
			}
		})
	}
}

// A tile served with a changed hash is caught: the proof is checked
// against the signed root, not against what the server says.
func TestVerifyTamperedTile(t *testing.T) {
	url, vkey, records, _ := testLog(t, 300)
	mirror := mirrorToDir(t, url, vkey)
	tile := filepath.Join(mirror, "tile", "0", "000")
	data, err := os.ReadFile(tile)
	if err != nil {
		t.Fatal(err)
	}
	data[5] ^= 1
	if err := os.WriteFile(tile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	recFile := filepath.Join(t.TempDir(), "r.bin")
	if err := os.WriteFile(recFile, records[3], 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"verify", "--key", vkey, "--log", mirror, "--index", "3", "--record", recFile}, &stdout, &stderr); code != 1 {
		t.Fatalf("exit %d with a tampered tile; want 1 (%s)", code, stdout.String())
	}
	if !strings.Contains(stderr.String(), "inconsistent tile") {
		t.Errorf("stderr %q; want the tile caught", stderr.String())
	}
}

// With a network configured, serve publishes the node's log under
// /log/<id>/, signed by the node's key.
func TestServeNetworkLog(t *testing.T) {
	data := t.TempDir()
	keyFile := filepath.Join(t.TempDir(), "node.key")
	id, err := network.GenerateKey(keyFile, "nodeA")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listen = ln.Addr().String()
	cfg.Data = data
	cfg.Retrieval.Disabled = true
	cfg.Network = config.Network{ID: "hanzo", KeyFile: keyFile}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	serveUntilStopped(t, ln, cfg, slog.New(slog.DiscardHandler))
	v, _ := note.NewVerifier(id.VerifierKey)
	c, _, err := network.FetchCheckpoint(context.Background(), network.HTTPFetcher{Base: "http://" + ln.Addr().String() + "/log/hanzo"}, v, "nodeA/hanzo")
	if err != nil {
		t.Fatal(err)
	}
	if c.Size != 0 {
		t.Errorf("size %d; want an empty log", c.Size)
	}
	if _, err := os.Stat(networkLogFile(data, "hanzo")); err != nil {
		t.Errorf("log file: %v", err)
	}
	resp, err := http.Get("http://" + ln.Addr().String() + "/log/other/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Error("a network not configured is served")
	}
}
