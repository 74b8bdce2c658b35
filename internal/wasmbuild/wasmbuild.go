// Package wasmbuild compiles Go packages to proxy-wasm modules for tests: the
// filter itself and small guest modules. Each package is built once per test
// binary; Go's build cache makes repeated builds cheap.
package wasmbuild

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
)

// ReleaseFlags are the go build flags of a release module, the Makefile's
// WASMFLAGS (e2e's TestReleaseModuleBudget keeps the two equal).
var ReleaseFlags = []string{"-buildmode=c-shared", "-trimpath", "-buildvcs=false", "-ldflags=-s -w"}

var (
	mu    sync.Mutex
	built = map[string]string{}
	dir   string
)

// Root is the module's root directory, found from this file's location.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Build compiles the package at pkg (an import path or a path relative to the
// module root, such as "./filter") with GOOS=wasip1 GOARCH=wasm
// -buildmode=c-shared, as a release build, and returns the module's bytes.
func Build(pkg string) ([]byte, error) {
	path, err := BuildFile(pkg)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(path)
}

// BuildFile is Build returning the path of the built module instead. The file
// lives until the process exits.
func BuildFile(pkg string) (string, error) {
	mu.Lock()
	defer mu.Unlock()
	if p, ok := built[pkg]; ok {
		return p, nil
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "shepherd-wasm-")
		if err != nil {
			return "", err
		}
		dir = d
	}
	out := filepath.Join(dir, fmt.Sprintf("m%d.wasm", len(built)))
	args := append(append([]string{"build"}, ReleaseFlags...), "-o", out, pkg)
	cmd := exec.Command("go", args...)
	cmd.Dir = Root()
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s for wasip1: %w\n%s", pkg, err, msg)
	}
	built[pkg] = out
	return out, nil
}

// Cleanup removes every module built so far. Call it from TestMain after m.Run.
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	if dir != "" {
		os.RemoveAll(dir)
	}
	dir, built = "", map[string]string{}
}
