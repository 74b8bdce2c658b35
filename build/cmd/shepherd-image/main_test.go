package main

import (
	"bytes"
	"io"
	"log"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/build/oci"
)

var module = []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}

func TestWasmPushAndPin(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	dir := t.TempDir()
	wasmFile := filepath.Join(dir, "shepherd.wasm")
	require.NoError(t, os.WriteFile(wasmFile, module, 0o644))
	pin := filepath.Join(dir, "filter-image.env")

	var out, errOut bytes.Buffer
	code := run([]string{"wasm", "--wasm", wasmFile, "--layout", filepath.Join(dir, "layout"),
		"--push", u.Host + "/shepherd/filter:dev", "--insecure", "--pin", pin}, &out, &errOut)
	require.Equal(t, 0, code, errOut.String())

	img, err := oci.WasmImage(module, oci.VariantOCI)
	require.NoError(t, err)
	d, _ := img.Digest()
	want := "oci://" + u.Host + "/shepherd/filter@" + d.String()
	require.Equal(t, "digest "+d.String()+"\nurl "+want+"\n", out.String())
	pinned, err := os.ReadFile(pin)
	require.NoError(t, err)
	require.Equal(t, "url="+want+"\n", string(pinned))
	_, err = os.Stat(filepath.Join(dir, "layout", "oci-layout"))
	require.NoError(t, err)
}

func TestSidecarRejectsNonLinuxBinary(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "x")
	require.NoError(t, os.WriteFile(f, []byte("MZ"), 0o755))
	var out, errOut bytes.Buffer
	require.Equal(t, 1, run([]string{"sidecar", "--sidecar", f, "--ctl", f}, &out, &errOut))
	require.Contains(t, errOut.String(), f+": not a Linux (ELF) binary")
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{nil, "usage:"},
		{[]string{"docker"}, `unknown command "docker"`},
		{[]string{"wasm"}, "--wasm is required"},
		{[]string{"wasm", "--wasm", "x", "--variant", "solo"}, `variant "solo": want "oci" or "docker"`},
		{[]string{"sidecar", "--sidecar", "x"}, "--sidecar and --ctl are required"},
		{[]string{"wasm", "--wasm", "x", "extra"}, `unexpected argument "extra"`},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			require.Equal(t, 2, run(tc.args, &out, &errOut))
			require.Contains(t, errOut.String(), tc.want)
		})
	}
}

// TestSidecarLayoutAndPin: the sidecar image is written as a layout named by
// --tag that conforms to the OCI schemas, and its digest pin is written for
// the manifests.
func TestSidecarLayoutAndPin(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	require.NoError(t, os.WriteFile(bin, []byte("\x7fELF-not-really"), 0o755))
	pin := filepath.Join(dir, "sidecar-image.env")
	var out, errOut bytes.Buffer
	code := run([]string{"sidecar", "--sidecar", bin, "--ctl", bin, "--layout", filepath.Join(dir, "layout"),
		"--tag", "v9", "--repo", "registry.example.com/shepherd-sidecar", "--pin", pin}, &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	img, err := oci.SidecarImageOf([]byte("\x7fELF-not-really"), []byte("\x7fELF-not-really"), "amd64")
	require.NoError(t, err)
	d, err := img.Digest()
	require.NoError(t, err)
	pinned, err := os.ReadFile(pin)
	require.NoError(t, err)
	require.Equal(t, "image=registry.example.com/shepherd-sidecar@"+d.String()+"\n", string(pinned))
	require.NoError(t, oci.CheckLayout(filepath.Join(dir, "layout")))
	index, err := os.ReadFile(filepath.Join(dir, "layout", "index.json"))
	require.NoError(t, err)
	require.Contains(t, string(index), `"org.opencontainers.image.ref.name": "v9"`)
}
