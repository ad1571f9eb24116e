package main

import (
	"go/ast"
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

// A test skips only where it was asked to (-short), in a benchmark, or
// through testenv.Skip, which names what is missing and fails instead of
// skipping where DSO_TEST_REQUIRE names it (CI). A bare t.Skip for want of
// something would pass unseen in CI; so would one for no reason at all.
func TestSkipsNameTheirNeed(t *testing.T) {
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || filepath.ToSlash(filepath.Dir(path)) == "../../internal/testenv" {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		for _, pos := range bareSkips(f) {
			rel, _ := filepath.Rel(root, path)
			t.Errorf("%s:%d: a skip outside testing.Short() and benchmarks: use testenv.Skip with the need that is missing", rel, fset.Position(pos).Line)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// bareSkips returns the Skip, Skipf and SkipNow calls in f that are not
// testenv's, not under `if testing.Short()` and not on a *testing.B.
func bareSkips(f *ast.File) []token.Pos {
	var out []token.Pos
	var stack []ast.Node
	ast.Inspect(f, func(n ast.Node) bool {
		if n == nil {
			stack = stack[:len(stack)-1]
			return true
		}
		stack = append(stack, n)
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || (sel.Sel.Name != "Skip" && sel.Sel.Name != "Skipf" && sel.Sel.Name != "SkipNow") {
			return true
		}
		recv, _ := sel.X.(*ast.Ident)
		if recv != nil && recv.Name == "testenv" || underShort(stack) || recv != nil && isBenchmarkParam(stack, recv.Name) {
			return true
		}
		out = append(out, call.Pos())
		return true
	})
	return out
}

// underShort reports whether the innermost node of stack lies in the body
// of an `if testing.Short()`.
func underShort(stack []ast.Node) bool {
	for i := len(stack) - 2; i >= 0; i-- {
		is, ok := stack[i].(*ast.IfStmt)
		if !ok || stack[i+1] != is.Body {
			continue
		}
		if c, ok := is.Cond.(*ast.CallExpr); ok {
			if s, ok := c.Fun.(*ast.SelectorExpr); ok && s.Sel.Name == "Short" {
				if x, ok := s.X.(*ast.Ident); ok && x.Name == "testing" {
					return true
				}
			}
		}
	}
	return false
}

// isBenchmarkParam reports whether name is, in the innermost function of
// stack that declares it, a parameter of type *testing.B.
func isBenchmarkParam(stack []ast.Node, name string) bool {
	for i := len(stack) - 1; i >= 0; i-- {
		var ft *ast.FuncType
		switch fn := stack[i].(type) {
		case *ast.FuncDecl:
			ft = fn.Type
		case *ast.FuncLit:
			ft = fn.Type
		default:
			continue
		}
		for _, p := range ft.Params.List {
			for _, n := range p.Names {
				if n.Name != name {
					continue
				}
				star, ok := p.Type.(*ast.StarExpr)
				if !ok {
					return false
				}
				s, ok := star.X.(*ast.SelectorExpr)
				return ok && s.Sel.Name == "B"
			}
		}
	}
	return false
}
