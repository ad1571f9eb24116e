// Command dso is the dso inference proxy: one binary for serving, learning,
// fitting adapters, importing and exporting experiences, and benchmarks.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// command is one subcommand: it parses its own flags from args.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands is the subcommand table; nested commands use a space ("config check").
var commands = map[string]command{}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	name, rest, ok := lookup(args)
	if !ok {
		usage(stderr)
		return 2
	}
	if err := commands[name].run(ctx, rest, stdout, stderr); err != nil {
		if err == errUsage {
			return 2
		}
		fmt.Fprintf(stderr, "dso %s: %v\n", name, err)
		return 1
	}
	return 0
}

// errUsage reports that a command has already printed its usage.
var errUsage = fmt.Errorf("usage")

func lookup(args []string) (name string, rest []string, ok bool) {
	if len(args) >= 2 {
		if _, ok := commands[args[0]+" "+args[1]]; ok {
			return args[0] + " " + args[1], args[2:], true
		}
	}
	if len(args) >= 1 {
		if _, ok := commands[args[0]]; ok {
			return args[0], args[1:], true
		}
	}
	return "", nil, false
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: dso <command> [flags]\n\ncommands:")
	for _, name := range sortedCommands() {
		fmt.Fprintf(w, "  %-18s %s\n", name, commands[name].summary)
	}
}
