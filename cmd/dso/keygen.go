package main

import (
	"context"
	"fmt"
	"io"

	"github.com/dso-proxy/dso/network"
)

func init() {
	commands["keygen"] = command{
		summary: "make this node's signing key; prints its verifier key last",
		args:    "--out FILE --name NAME",
		about: `Writes a new Ed25519 key for the experience network (mode 0600; an existing
file is never overwritten) and prints the verifier key other nodes configure
for this one on the last line, so that scripts can take it with tail -1.`,
		run: keygenCmd,
	}
}

// keygenCmd writes a new node key and prints the verifier key on the last
// line, so that scripts can take it with tail -1.
func keygenCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keygen")
	out := fs.String("out", "", "key `FILE` to create (mode 0600; never overwritten)")
	name := fs.String("name", "", "the node's `NAME` in its verifier key (no spaces or '+')")
	if err := parseFlags(fs, args, stdout, stderr, "out", "name"); err != nil {
		return err
	}
	id, err := network.GenerateKey(*out, *name)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s; the verifier key other nodes configure for this one:\n%s\n", *out, id.VerifierKey)
	return nil
}
