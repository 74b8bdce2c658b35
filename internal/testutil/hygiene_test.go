package testutil

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// moduleRoot is the repository's root, two levels up.
const moduleRoot = "../.."

// TestEveryReceiveInATestHasATimeout: a receive in a test that waits for
// something that never comes hangs the suite until go test's 10-minute
// alarm, with no word of what was awaited. Every receive in a _test.go file
// is a case of a select that also has a way out: a default, a timer
// (time.After, time.Tick, a Timer's or Ticker's C) or a context's Done.
// Receive is the helper for the common case.
func TestEveryReceiveInATestHasATimeout(t *testing.T) {
	var bad []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(moduleRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "testdata", "node_modules", "bin", ".git":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		bad = append(bad, unguardedReceives(fset, f)...)
		return nil
	})
	require.NoError(t, err)
	require.Empty(t, bad, "receives without a timeout (use testutil.Receive or a select with a timer)")
}

// unguardedReceives lists the receives of f that are not a case of a
// select with a way out.
func unguardedReceives(fset *token.FileSet, f *ast.File) []string {
	// Names given a time.After or time.Tick channel (deadline :=
	// time.After(d)) are timers too.
	timers := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		if a, ok := n.(*ast.AssignStmt); ok && len(a.Lhs) == len(a.Rhs) {
			for i, r := range a.Rhs {
				if id, ok := a.Lhs[i].(*ast.Ident); ok && isTimeCall(r) {
					timers[id.Name] = true
				}
			}
		}
		return true
	})
	guarded := map[*ast.UnaryExpr]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectStmt)
		if !ok || !hasWayOut(sel, timers) {
			return true
		}
		for _, c := range sel.Body.List {
			if r := commReceive(c.(*ast.CommClause).Comm); r != nil {
				guarded[r] = true
			}
		}
		return true
	})
	var bad []string
	ast.Inspect(f, func(n ast.Node) bool {
		if u, ok := n.(*ast.UnaryExpr); ok && u.Op == token.ARROW && !guarded[u] && !isDone(u.X) {
			bad = append(bad, fset.Position(u.Pos()).String())
		}
		return true
	})
	return bad
}

// commReceive returns the receive of a select case: `<-ch`, `v := <-ch`,
// `v, ok = <-ch`.
func commReceive(s ast.Stmt) *ast.UnaryExpr {
	var e ast.Expr
	switch s := s.(type) {
	case *ast.ExprStmt:
		e = s.X
	case *ast.AssignStmt:
		if len(s.Rhs) == 1 {
			e = s.Rhs[0]
		}
	}
	u, _ := e.(*ast.UnaryExpr)
	if u != nil && u.Op == token.ARROW {
		return u
	}
	return nil
}

// hasWayOut reports whether a select has a default or a case that ends the
// wait on time: a receive from time.After/time.Tick, from a timer's or
// ticker's C, or from a context's Done().
func hasWayOut(sel *ast.SelectStmt, timers map[string]bool) bool {
	for _, c := range sel.Body.List {
		cc := c.(*ast.CommClause)
		if cc.Comm == nil {
			return true // default
		}
		r := commReceive(cc.Comm)
		if r == nil {
			continue
		}
		switch x := r.X.(type) {
		case *ast.CallExpr:
			if isTimeCall(x) || isDone(x) {
				return true
			}
		case *ast.Ident:
			if timers[x.Name] {
				return true
			}
		case *ast.SelectorExpr:
			if x.Sel.Name == "C" {
				return true
			}
		}
	}
	return false
}

// isTimeCall reports whether e is time.After(...) or time.Tick(...).
func isTimeCall(e ast.Expr) bool {
	c, ok := e.(*ast.CallExpr)
	if !ok {
		return false
	}
	s, ok := c.Fun.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	id, ok := s.X.(*ast.Ident)
	return ok && id.Name == "time" && (s.Sel.Name == "After" || s.Sel.Name == "Tick")
}

// isDone reports whether e is a call of a Done method (a context's): waiting
// for it is waiting for the context's own end.
func isDone(e ast.Expr) bool {
	c, ok := e.(*ast.CallExpr)
	if !ok {
		return false
	}
	s, ok := c.Fun.(*ast.SelectorExpr)
	return ok && s.Sel.Name == "Done" && len(c.Args) == 0
}

// TestMakeTestRunsTheLongTests: the long tests (the soak, the 100k-request
// heap test) shorten or step aside under go test -short for quick runs;
// make test, which CI runs, must run them in full.
func TestMakeTestRunsTheLongTests(t *testing.T) {
	mk, err := os.ReadFile(filepath.Join(moduleRoot, "Makefile"))
	require.NoError(t, err)
	var recipe []string
	in := false
	for _, line := range strings.Split(string(mk), "\n") {
		switch {
		case strings.HasPrefix(line, "test:"):
			in = true
		case in && strings.HasPrefix(line, "\t"):
			recipe = append(recipe, line)
		case in:
			in = false
		}
		if strings.HasPrefix(line, "TESTFLAGS") {
			require.NotContains(t, line, "-short", "TESTFLAGS' default")
		}
	}
	require.NotEmpty(t, recipe, "the Makefile has a test target")
	require.Contains(t, strings.Join(recipe, "\n"), "$(GO) test", "make test runs go test")
	for _, line := range recipe {
		require.NotContains(t, line, "-short", "make test runs the long tests in full")
	}
}

func TestUnguardedReceives(t *testing.T) {
	tests := []struct {
		name, body string
		bad        int
	}{
		{"bare", `<-ch`, 1},
		{"assigned", `v := <-ch; _ = v`, 1},
		{"argument", `f(<-ch)`, 1},
		{"select without a way out", `select { case <-ch: case <-other: }`, 2},
		{"time.After", `select { case <-ch: case <-time.After(time.Second): }`, 0},
		{"a deadline variable", `d := time.After(time.Second); select { case v := <-ch: _ = v; case <-d: }`, 0},
		{"a timer's C", `select { case <-ch: case <-timer.C: }`, 0},
		{"default", `select { case <-ch: default: }`, 0},
		{"a context", `select { case <-ch: case <-ctx.Done(): }`, 0},
		{"a context alone", `<-ctx.Done()`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, "x_test.go", "package x\nfunc g() {\n"+tt.body+"\n}\n", 0)
			require.NoError(t, err)
			require.Len(t, unguardedReceives(fset, f), tt.bad)
		})
	}
}
