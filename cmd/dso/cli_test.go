package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// runCLI runs dso with args and returns its exit status and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// Issue 26: the conventions Ollama and LiteLLM users expect of a CLI.
func TestCLIConventions(t *testing.T) {
	for _, tt := range []struct {
		args   []string
		code   int
		stdout string // prefix of stdout's first line; "" when stdout must be empty
		stderr string // prefix of stderr's first line; "" when stderr must be empty
	}{
		{args: []string{"--version"}, code: 0, stdout: "dso " + version},
		{args: []string{"-v"}, code: 0, stdout: "dso " + version},
		{args: []string{"version"}, code: 0, stdout: "dso " + version},
		{args: []string{"version", "extra"}, code: 2, stderr: `dso version: unexpected argument "extra"`},
		{args: []string{"help"}, code: 0, stdout: "usage: dso <command> [flags]"},
		{args: []string{"--help"}, code: 0, stdout: "usage: dso <command> [flags]"},
		{args: []string{"-h"}, code: 0, stdout: "usage: dso <command> [flags]"},
		{args: nil, code: 2, stderr: "usage: dso <command> [flags]"},
		{args: []string{"help", "serve"}, code: 0, stdout: "usage: dso serve [flags]"},
		{args: []string{"--help", "serve"}, code: 0, stdout: "usage: dso serve [flags]"},
		{args: []string{"help", "config", "check"}, code: 0, stdout: "usage: dso config check FILE"},
		{args: []string{"help", "config"}, code: 0, stdout: "usage: dso config <command> [flags]"},
		{args: []string{"config", "--help"}, code: 0, stdout: "usage: dso config <command> [flags]"},
		{args: []string{"config"}, code: 2, stderr: "usage: dso config <command> [flags]"},
		{args: []string{"foo"}, code: 2, stderr: "dso: unknown command foo (run 'dso help' for the list)"},
		{args: []string{"config", "chek", "x.yaml"}, code: 2, stderr: "dso: unknown command config chek (run 'dso help' for the list)"},
		{args: []string{"--bogus"}, code: 2, stderr: "dso: unknown flag --bogus"},
		{args: []string{"help", "foo"}, code: 2, stderr: "dso help: unknown command foo"},
		{args: []string{"import", "--bogus"}, code: 2, stderr: "dso import: unknown flag --bogus (run 'dso help import' for usage)"},
		{args: []string{"bench", "index", "--n", "many"}, code: 2, stderr: `dso bench index: invalid value "many" for flag --n`},
		{args: []string{"serve", "extra"}, code: 2, stderr: `dso serve: unexpected argument "extra"`},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d; want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout, stderr)
			}
			for _, o := range []struct{ name, got, want string }{{"stdout", stdout, tt.stdout}, {"stderr", stderr, tt.stderr}} {
				if o.want == "" && o.got != "" {
					t.Errorf("%s %q; want none", o.name, o.got)
				}
				if !strings.HasPrefix(firstLine(o.got), o.want) {
					t.Errorf("%s starts %q; want %q", o.name, firstLine(o.got), o.want)
				}
			}
		})
	}
}

// Every command's help is one format, printed on stdout with exit 0 by
// -h, --help and dso help NAME alike.
func TestHelpEveryCommand(t *testing.T) {
	noFlags := map[string]bool{"config check": true, "help": true, "version": true}
	for _, name := range sortedCommands() {
		t.Run(name, func(t *testing.T) {
			var want string
			for i, args := range [][]string{
				append(strings.Fields(name), "-h"),
				append(strings.Fields(name), "--help"),
				append([]string{"help"}, strings.Fields(name)...),
			} {
				code, stdout, stderr := runCLI(t, args...)
				if code != 0 || stderr != "" {
					t.Fatalf("dso %s: exit %d, stderr %q; want 0 and none", strings.Join(args, " "), code, stderr)
				}
				if i == 0 {
					want = stdout
				} else if stdout != want {
					t.Errorf("dso %s printed another help than dso %s -h:\n%s", strings.Join(args, " "), name, stdout)
				}
			}
			if first := firstLine(want); !strings.HasPrefix(first, "usage: dso "+name) {
				t.Errorf("first line %q; want usage: dso %s ...", first, name)
			}
			// The usage (one line, or one a form), a blank line, the summary.
			_, rest, _ := strings.Cut(want, "\n\n")
			if firstLine(rest) != commands[name].summary {
				t.Errorf("help does not give the summary %q after the usage:\n%s", commands[name].summary, want)
			}
			if strings.Contains(want, "Usage of") || strings.Contains(want, "\n  -") && !strings.Contains(want, "\n  --") {
				t.Errorf("help in the flag package's own format:\n%s", want)
			}
			if has := strings.Contains(want, "\nflags:\n  --"); has == noFlags[name] {
				t.Errorf("flags section present = %v; want %v:\n%s", has, !noFlags[name], want)
			}
		})
	}
}

// A missing required flag is named in one line, not the whole help.
func TestMissingRequiredFlag(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"keygen", "--name", "a"}, "dso keygen: missing required flag --out"},
		{[]string{"keygen", "--out", "k"}, "dso keygen: missing required flag --name"},
		{[]string{"align", "fit", "--to", "rows:y", "--out", "a"}, "dso align fit: missing required flag --from"},
		{[]string{"align", "fit", "--from", "hash", "--to", "vectors:v", "--out", "a"}, "dso align fit: missing required flag --anchors"},
		{[]string{"learn", "--dataset", "d.jsonl"}, "dso learn: missing required flag --model"},
		{[]string{"verify", "--key", "k"}, "dso verify: missing required flag --log"},
		{[]string{"verify", "--key", "k", "--log", "l"}, "dso verify: missing required flag --index or --record"},
		{[]string{"eval", "retrieval", "--vectors", "v"}, "dso eval retrieval: missing required flag --pairs"},
		{[]string{"eval", "gate"}, "dso eval gate: missing required flag --pairs"},
		{[]string{"config", "check"}, "dso config check: missing the config FILE"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tt.args...)
			if code != 2 {
				t.Errorf("exit %d; want 2", code)
			}
			if stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, tt.want) {
				t.Errorf("stdout %q, stderr %q; want one line on stderr starting %q", stdout, stderr, tt.want)
			}
			if name := strings.TrimPrefix(strings.Fields(tt.want)[1], "dso "); !strings.Contains(stderr, "'dso help ") {
				t.Errorf("stderr %q does not say where %s's usage is", stderr, name)
			}
		})
	}
}

func TestVersionText(t *testing.T) {
	platform := runtime.GOOS + "/" + runtime.GOARCH
	bi := &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "9663ada1f2c3"}, {Key: "vcs.modified", Value: "true"},
	}}
	for _, tt := range []struct {
		name, version string
		bi            *debug.BuildInfo
		want          string
	}{
		{"set by ldflags", "v1.2.0", bi, "dso v1.2.0\ncommit 9663ada1f2c3 (modified)\ngo1.99.1 " + platform + "\n"},
		{"devel", "devel", bi, "dso devel\ncommit 9663ada1f2c3 (modified)\ngo1.99.1 " + platform + "\n"},
		{"go install module@version", "devel", &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Version: "v0.5.0"}},
			"dso v0.5.0\ncommit unknown\ngo1.99.1 " + platform + "\n"},
		{"no build information", "devel", nil, "dso devel\ncommit unknown\n" + runtime.Version() + " " + platform + "\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := versionText(tt.version, tt.bi); got != tt.want {
				t.Errorf("got %q; want %q", got, tt.want)
			}
		})
	}
}

// Issue 26: config check said ok for a key_file serve could not read,
// took port 99999, and spoke in Go types.
func TestConfigCheckMessages(t *testing.T) {
	dir := t.TempDir()
	absent := filepath.Join(dir, "absent.key")
	file := writeFile(t, "dso.yaml", `listen: 127.0.0.1:99999
retreival:
  top_k: 3
network:
  id: hanzo
  key_file: `+absent+`
backends:
  - type: ollama
    url: http://127.0.0.1:11434
    timeout: fast
`)
	code, stdout, stderr := runCLI(t, "config", "check", file)
	if code != 1 {
		t.Errorf("exit %d; want 1", code)
	}
	want := []string{
		`line 1: listen: "127.0.0.1:99999": port "99999" is not a number from 0 to 65535`,
		`line 2: unknown field retreival; did you mean retrieval?`,
		`line 6: network.key_file: "` + absent + `" does not exist (make one with dso keygen)`,
		`line 10: backends[0].timeout: "fast" is not a duration (use a form like 250ms, 2s, 1m)`,
	}
	got := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(got) != len(want) {
		t.Fatalf("got %d lines; want %d:\n%s", len(got), len(want), stdout)
	}
	for i, w := range want {
		if got[i] != file+": "+w {
			t.Errorf("line %d: %q; want %q", i, got[i], file+": "+w)
		}
	}
	if !strings.Contains(stderr, "4 problem(s)") {
		t.Errorf("stderr %q; want the count", stderr)
	}

	// With the key there, the same network section is ok.
	if err := os.WriteFile(absent, []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := writeFile(t, "ok.yaml", "listen: 127.0.0.1:8080\nnetwork:\n  id: hanzo\n  key_file: "+absent+"\n")
	if code, stdout, stderr := runCLI(t, "config", "check", ok); code != 0 || stdout != ok+": ok\n" {
		t.Errorf("exit %d, stdout %q, stderr %q; want ok", code, stdout, stderr)
	}
}

// Issue 26: dso export --data typo-dir made an empty store and exited 0.
// A reading command creates no directory and no database.
func TestExportCreatesNothing(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, data := range []string{filepath.Join(dir, "typo-dir"), empty} {
		out := filepath.Join(dir, "out.jsonl")
		code, stdout, stderr := runCLI(t, "export", "--data", data, "--file", out)
		if code != 1 || stdout != "" {
			t.Errorf("export --data %s: exit %d, stdout %q; want 1 and none", data, code, stdout)
		}
		if want := "dso export: no dso data at " + data; !strings.HasPrefix(stderr, want) {
			t.Errorf("stderr %q; want it to start %q", stderr, want)
		}
		entries, err := os.ReadDir(data)
		if data == empty && (err != nil || len(entries) > 0) {
			t.Errorf("%s after export: %v, %v; want it empty", data, entries, err)
		}
		if data != empty && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("export made %s (%v)", data, err)
		}
		if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("export wrote %s (%v)", out, err)
		}
	}
}
