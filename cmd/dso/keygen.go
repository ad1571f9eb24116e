package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/dso-proxy/dso/network"
)

func init() {
	commands["keygen"] = command{summary: "make this node's signing key; prints its verifier key last", run: keygenCmd}
}

// keygenCmd writes a new node key and prints the verifier key on the last
// line, so that scripts can take it with tail -1.
func keygenCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "key file to create (mode 0600; never overwritten)")
	name := fs.String("name", "", "the node's name in its verifier key (no spaces or '+')")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: dso keygen --out FILE --name NAME")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || *out == "" || *name == "" {
		if err == nil {
			fs.Usage()
		}
		return errUsage
	}
	id, err := network.GenerateKey(*out, *name)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s; the verifier key other nodes configure for this one:\n%s\n", *out, id.VerifierKey)
	return nil
}
