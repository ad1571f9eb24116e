// Command dso is the dso inference proxy: one binary for serving, learning,
// fitting adapters, importing and exporting experiences, and benchmarks.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// command is one subcommand: it parses its own flags from args (with
// newFlagSet and parseFlags, so that its help and usage errors look like
// every other command's; see help.go).
type command struct {
	summary string
	// args follows "usage: dso NAME" in the help; "" means "[flags]".
	args string
	// about is the help's text before the flags, more its text after them;
	// either may be empty.
	about, more string
	run         func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands is the subcommand table; nested commands use a space ("config check").
var commands = map[string]command{}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run runs the command args name and returns the exit status: 0 when it
// succeeded or printed the help asked for, 1 when it failed, 2 for a
// usage mistake.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help":
		args = append([]string{"help"}, args[1:]...)
	case "-v", "-version", "--version":
		args = append([]string{"version"}, args[1:]...)
	}
	name, rest, ok := lookup(args)
	if !ok {
		return unknown(args, stdout, stderr)
	}
	err := commands[name].run(ctx, rest, stdout, stderr)
	switch {
	case err == nil, errors.Is(err, errHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintf(stderr, "dso %s: %v\n", name, err)
	return 1
}

// unknown answers args that name no command: a group's first word alone
// lists the group (on stdout, exit 0, when help was asked for).
func unknown(args []string, stdout, stderr io.Writer) int {
	if len(group(args[0])) > 0 {
		if len(args) == 1 {
			printGroup(stderr, args[0])
			return 2
		}
		if len(args) == 2 && (args[1] == "-h" || args[1] == "-help" || args[1] == "--help") {
			printGroup(stdout, args[0])
			return 0
		}
	}
	name := args[0]
	if len(group(args[0])) > 0 && len(args) > 1 {
		name += " " + args[1]
	}
	if strings.HasPrefix(name, "-") {
		fmt.Fprintf(stderr, "dso: unknown flag %s: flags follow the command (run 'dso help' for the list)\n", name)
		return 2
	}
	fmt.Fprintf(stderr, "dso: unknown command %s (run 'dso help' for the list)\n", name)
	return 2
}

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
