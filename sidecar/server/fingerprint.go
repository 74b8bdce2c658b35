package server

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// fingerprint summarizes a file's content, or a directory's files' names and
// contents (one level), so that polling notices any change, including a
// Kubernetes ConfigMap's symlink swap. A missing path has its own value.
func fingerprint(path string) string {
	h := sha256.New()
	info, err := os.Stat(path)
	if err != nil {
		return "error:" + err.Error()
	}
	if !info.IsDir() {
		hashFile(h, path)
		return hex.EncodeToString(h.Sum(nil))
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		return "error:" + err.Error()
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, n := range names {
		p := filepath.Join(path, n)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			fmt.Fprintf(h, "%s\x00", n)
			hashFile(h, p)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func hashFile(w io.Writer, path string) {
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintf(w, "error:%v", err)
		return
	}
	defer f.Close()
	_, _ = io.Copy(w, io.LimitReader(f, 16<<20))
}
