package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is dso's release, set when building one:
//
//	go build -ldflags "-X main.version=v1.2.0" ./cmd/dso
//
// "devel" otherwise (go install module@version stamps its own instead).
var version = "devel"

func init() {
	commands["version"] = command{
		summary: "print dso's version, the commit it was built from and the Go version",
		about:   "The same as dso --version. The first line is \"dso VERSION\".",
		run:     versionCmd,
	}
}

func versionCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if err := parseFlags(newFlagSet("version"), args, stdout, stderr); err != nil {
		return err
	}
	bi, _ := debug.ReadBuildInfo()
	fmt.Fprint(stdout, versionText(version, bi))
	return nil
}

// versionText is what dso version prints, from the build's information
// (nil when the binary has none):
//
//	dso v1.2.0
//	commit 9663ada1f2c3... (modified)
//	go1.26.8 linux/amd64
func versionText(v string, bi *debug.BuildInfo) string {
	commit, modified, goVersion := "unknown", false, runtime.Version()
	if bi != nil {
		if v == "devel" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if bi.GoVersion != "" {
			goVersion = bi.GoVersion
		}
	}
	if modified {
		commit += " (modified)"
	}
	return fmt.Sprintf("dso %s\ncommit %s\n%s %s/%s\n", v, commit, goVersion, runtime.GOOS, runtime.GOARCH)
}
