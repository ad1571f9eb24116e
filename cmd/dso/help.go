package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Every command's help has one shape, printed by printHelp from its entry
// in commands and its flag set:
//
//	usage: dso NAME ARGS
//
//	SUMMARY
//
//	ABOUT
//
//	flags:
//	  --flag VALUE          what it does (default ...)
//
//	MORE
//
// -h, --help and `dso help NAME` print it on standard output and exit 0;
// a usage mistake (an unknown flag, a missing required one, a stray
// argument) is one line on standard error and exit 2.

var (
	// errUsage reports a usage mistake, already printed: exit 2.
	errUsage = errors.New("usage")
	// errHelp reports that help was asked for and printed: exit 0.
	errHelp = errors.New("help")
)

func init() {
	commands["help"] = command{
		summary: "show the commands, or a command's usage and flags",
		args:    "[COMMAND]",
		run:     helpCmd,
	}
}

// newFlagSet is the flag set of command name. It prints nothing itself:
// parseFlags reports its errors and its help.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses args into fs, whose name is the command's. -h and
// --help print the command's help on stdout (errHelp). An unknown or bad
// flag, an argument left over, or a required flag left empty is reported
// on one line of stderr (errUsage).
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer, required ...string) error {
	if err := parseOnly(fs, args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(stderr, fs.Name(), "unexpected argument %q", fs.Arg(0))
	}
	return requireFlags(fs, stderr, required...)
}

// parseOnly is parseFlags for a command that takes arguments after its
// flags: it leaves them, and required flags, to the command.
func parseOnly(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		printHelp(stdout, fs.Name(), fs)
		return errHelp
	}
	return usageError(stderr, fs.Name(), "%s", flagErrorText(err))
}

// flagErrorText is a flag package error in the form the help shows flags
// in: "unknown flag --x" for "flag provided but not defined: -x", and
// "--n" for "-n".
func flagErrorText(err error) string {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		return "unknown flag -" + name
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		return "flag -" + name + " needs a value"
	}
	if i := strings.Index(msg, " for flag -"); i >= 0 {
		return msg[:i] + " for flag --" + msg[i+len(" for flag -"):]
	}
	return msg
}

// requireFlags reports the first of names whose flag is empty.
func requireFlags(fs *flag.FlagSet, stderr io.Writer, names ...string) error {
	for _, n := range names {
		if f := fs.Lookup(n); f == nil || f.Value.String() == "" {
			return usageError(stderr, fs.Name(), "missing required flag --%s", n)
		}
	}
	return nil
}

// usageError prints a usage mistake of command name on one line, with
// where to read its usage, and returns errUsage.
func usageError(stderr io.Writer, name, format string, args ...any) error {
	fmt.Fprintf(stderr, "dso %s: %s (run 'dso help %s' for usage)\n", name, fmt.Sprintf(format, args...), name)
	return errUsage
}

// printHelp prints command name's help; fs is its flag set (nil: none).
func printHelp(w io.Writer, name string, fs *flag.FlagSet) {
	c := commands[name]
	args := c.args
	if args == "" && hasFlags(fs) {
		args = "[flags]"
	}
	fmt.Fprintf(w, "usage: dso %s\n\n%s\n", strings.TrimSpace(name+" "+args), c.summary)
	if c.about != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimRight(c.about, "\n"))
	}
	if hasFlags(fs) {
		fmt.Fprint(w, "\nflags:\n")
		printFlags(w, fs)
	}
	if c.more != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimRight(c.more, "\n"))
	}
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	if fs != nil {
		fs.VisitAll(func(*flag.Flag) { n++ })
	}
	return n > 0
}

// flagColumn is where flag descriptions start; flagWidth where they wrap.
const (
	flagColumn = 24
	flagWidth  = 80
)

// printFlags lists fs's flags as "--name VALUE  usage (default d)". The
// VALUE is the usage's `quoted` word, else the flag's type in capitals.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		value, usage := flag.UnquoteUsage(f)
		head := "  --" + f.Name
		if value != "" {
			head += " " + strings.ToUpper(value)
		}
		if d := f.DefValue; d != "" && d != "0" && d != "false" && d != "[]" {
			usage += fmt.Sprintf(" (default %s)", d)
		}
		lines := wrap(usage, flagWidth-flagColumn)
		if len(head) >= flagColumn-1 {
			fmt.Fprintln(w, head)
		} else if len(lines) > 0 {
			head += strings.Repeat(" ", flagColumn-len(head))
			fmt.Fprintln(w, head+lines[0])
			lines = lines[1:]
		} else {
			fmt.Fprintln(w, head)
		}
		for _, l := range lines {
			fmt.Fprintln(w, strings.Repeat(" ", flagColumn)+l)
		}
	})
}

// wrap breaks text into lines of at most width bytes at spaces (a longer
// word keeps its own line).
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(text) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

// usage prints the list of commands.
func usage(w io.Writer) {
	fmt.Fprint(w, "usage: dso <command> [flags]\n\n"+
		"dso is an inference proxy for OpenAI, Ollama and Anthropic clients that\n"+
		"injects lessons learned from earlier answers.\n\ncommands:\n")
	for _, name := range sortedCommands() {
		fmt.Fprintf(w, "  %-18s %s\n", name, commands[name].summary)
	}
	fmt.Fprint(w, "\nrun 'dso help COMMAND' or 'dso COMMAND --help' for a command's usage and flags;\n"+
		"'dso --version' for the version.\n")
}

func sortedCommands() []string {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// group returns the commands under a first word that is not a command
// itself ("config" → "config check"), sorted; none for any other word.
func group(word string) []string {
	var names []string
	for _, n := range sortedCommands() {
		if strings.HasPrefix(n, word+" ") {
			names = append(names, n)
		}
	}
	return names
}

// printGroup lists the commands of a group.
func printGroup(w io.Writer, word string) {
	fmt.Fprintf(w, "usage: dso %s <command> [flags]\n\ncommands:\n", word)
	for _, n := range group(word) {
		fmt.Fprintf(w, "  %-18s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nrun 'dso help %s COMMAND' for a command's usage and flags.\n", word)
}

// helpCmd is `dso help [COMMAND]`: a command's help is what COMMAND
// --help prints, so it is printed by the command's own flag set.
func helpCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("help")
	if err := parseOnly(fs, args, stdout, stderr); err != nil {
		return err
	}
	args = fs.Args()
	if len(args) == 0 {
		usage(stdout)
		return nil
	}
	name, rest, ok := lookup(args)
	switch {
	case ok && len(rest) == 0:
		err := commands[name].run(ctx, []string{"--help"}, stdout, stderr)
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	case len(args) == 1 && len(group(args[0])) > 0:
		printGroup(stdout, args[0])
		return nil
	}
	fmt.Fprintf(stderr, "dso help: unknown command %s (run 'dso help' for the list)\n", strings.Join(args, " "))
	return errUsage
}
