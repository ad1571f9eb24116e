package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dso-proxy/dso/network"
	"golang.org/x/mod/sumdb/note"
)

func TestKeygen(t *testing.T) {
	file := filepath.Join(t.TempDir(), "node.key")
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"keygen", "--out", file, "--name", "nodeA"}, &stdout, &stderr); code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	vkey := lines[len(lines)-1]
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatalf("last line %q is not a verifier key: %v", vkey, err)
	}
	if v.Name() != "nodeA" {
		t.Errorf("name %q; want nodeA", v.Name())
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v; want 0600", fi.Mode().Perm())
	}
	id, err := network.LoadKey(file)
	if err != nil {
		t.Fatal(err)
	}
	if id.VerifierKey != vkey {
		t.Errorf("loaded verifier key %q; printed %q", id.VerifierKey, vkey)
	}
	// The key signs what the printed verifier key accepts.
	msg, err := note.Sign(&note.Note{Text: "hello\n"}, id.Signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
		t.Errorf("printed key does not verify the file's signature: %v", err)
	}
	if bytes.Contains(stdout.Bytes(), []byte("PRIVATE")) || bytes.Contains(stderr.Bytes(), []byte("PRIVATE")) {
		t.Error("keygen printed the private key")
	}
}

func TestKeygenErrors(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "exists.key")
	if err := os.WriteFile(existing, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
		code int
	}{
		{"no out", []string{"keygen", "--name", "a"}, 2},
		{"no name", []string{"keygen", "--out", filepath.Join(dir, "a.key")}, 2},
		{"bad name", []string{"keygen", "--out", filepath.Join(dir, "b.key"), "--name", "a+b"}, 1},
		{"exists", []string{"keygen", "--out", existing, "--name", "a"}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), tt.args, &stdout, &stderr); code != tt.code {
				t.Errorf("exit %d; want %d (%s)", code, tt.code, stderr.String())
			}
		})
	}
	if b, _ := os.ReadFile(existing); string(b) != "keep me" {
		t.Errorf("keygen overwrote an existing file: %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "b.key")); err == nil {
		t.Error("a failed keygen left a file")
	}
}
