package main

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const modulePath = "github.com/dso-proxy/dso"

// packages returns each package directory of the module (relative path) with
// the import paths of its non-test files, and how many of its files carry a
// package doc comment.
func packages(t *testing.T) map[string]struct {
	imports map[string]bool
	docs    int
} {
	t.Helper()
	root := filepath.Join("..", "..")
	out := map[string]struct {
		imports map[string]bool
		docs    int
	}{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		p := out[rel]
		if p.imports == nil {
			p.imports = map[string]bool{}
		}
		if f.Doc != nil {
			p.docs++
		}
		for _, im := range f.Imports {
			s, _ := strconv.Unquote(im.Path.Value)
			p.imports[s] = true
		}
		out[rel] = p
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Every package has exactly one package doc comment (in doc.go, or the
// command's main file).
func TestPackageDocs(t *testing.T) {
	if _, err := os.Stat(filepath.Join("..", "..", "go.mod")); err != nil {
		t.Fatal("not run from cmd/dso in the module")
	}
	for dir, p := range packages(t) {
		if p.docs != 1 {
			t.Errorf("package %s has %d package doc comments; want exactly 1", dir, p.docs)
		}
	}
}

// Imports go one way: cmd → proxy → the rest; nothing imports proxy or cmd
// except those above them.
func TestImportDirection(t *testing.T) {
	for dir, p := range packages(t) {
		top := strings.Split(filepath.ToSlash(dir), "/")[0]
		for im := range p.imports {
			if !strings.HasPrefix(im, modulePath+"/") {
				continue
			}
			target := strings.TrimPrefix(im, modulePath+"/")
			switch {
			case strings.HasPrefix(target, "cmd/"):
				t.Errorf("%s imports %s: nothing may import a command", dir, im)
			case target == "proxy" && top != "cmd":
				t.Errorf("%s imports %s: only cmd may import proxy", dir, im)
			}
		}
	}
}
