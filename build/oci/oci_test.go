package oci

import (
	"archive/tar"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stretchr/testify/require"
	"istio.io/istio/pkg/wasm"
)

// module is the smallest valid WebAssembly module plus a custom section, so
// that two modules can differ.
func module(tag string) []byte {
	m := append([]byte(nil), wasmMagic...)
	// custom section (id 0): name length, name, no payload.
	m = append(m, 0x00, byte(1+len(tag)), byte(len(tag)))
	return append(m, tag...)
}

func TestWasmImageVariants(t *testing.T) {
	cases := []struct {
		variant  Variant
		manifest types.MediaType
		config   types.MediaType
		layer    types.MediaType
	}{
		{VariantOCI, types.OCIManifestSchema1, types.OCIConfigJSON, types.OCILayer},
		{VariantDocker, types.DockerManifestSchema2, types.DockerConfigJSON, types.DockerLayer},
	}
	for _, tc := range cases {
		t.Run(string(tc.variant), func(t *testing.T) {
			img, err := WasmImage(module("a"), tc.variant)
			require.NoError(t, err)
			m, err := img.Manifest()
			require.NoError(t, err)
			require.Equal(t, tc.manifest, m.MediaType)
			require.Equal(t, tc.config, m.Config.MediaType)
			require.Len(t, m.Layers, 1)
			require.Equal(t, tc.layer, m.Layers[0].MediaType)
			got, err := WasmFromImage(img)
			require.NoError(t, err)
			require.Equal(t, module("a"), got)
		})
	}
}

func TestWasmImageIsReproducible(t *testing.T) {
	a1, err := WasmImage(module("a"), VariantOCI)
	require.NoError(t, err)
	a2, err := WasmImage(module("a"), VariantOCI)
	require.NoError(t, err)
	b, err := WasmImage(module("b"), VariantOCI)
	require.NoError(t, err)
	d1, _ := a1.Digest()
	d2, _ := a2.Digest()
	db, _ := b.Digest()
	require.Equal(t, d1, d2, "same module, same digest")
	require.NotEqual(t, d1, db, "different module, different digest")
}

func TestWasmImageRejects(t *testing.T) {
	_, err := WasmImage([]byte("#!/bin/sh"), VariantOCI)
	require.EqualError(t, err, `wasm module: not a WebAssembly binary (missing \0asm version 1 header)`)
	_, err = WasmImage(module("a"), Variant("solo"))
	require.EqualError(t, err, `variant "solo": want "oci" or "docker"`)
}

// TestPushPullWithIstioFetcher pushes both variants to an in-process registry
// and pulls them back twice: with go-containerregistry (same digest, same
// bytes) and with the fetcher istiod's agent uses for WasmPlugin oci:// urls.
func TestPushPullWithIstioFetcher(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	require.NoError(t, err)

	for _, v := range []Variant{VariantOCI, VariantDocker} {
		t.Run(string(v), func(t *testing.T) {
			mod := module("push-" + string(v))
			img, err := WasmImage(mod, v)
			require.NoError(t, err)
			want, err := img.Digest()
			require.NoError(t, err)

			ref := u.Host + "/shepherd/filter-" + string(v) + ":test"
			pushed, err := Push(ref, img, true)
			require.NoError(t, err)
			require.Equal(t, want.String(), pushed.DigestStr())
			require.Equal(t, "oci://"+u.Host+"/shepherd/filter-"+string(v)+"@"+want.String(),
				WasmPluginURL(pushed.Context().Name(), want))

			// Pull by digest with go-containerregistry.
			d, err := name.NewDigest(pushed.String(), name.Insecure)
			require.NoError(t, err)
			back, err := remote.Image(d)
			require.NoError(t, err)
			got, err := back.Digest()
			require.NoError(t, err)
			require.Equal(t, want, got)
			wasmBack, err := WasmFromImage(back)
			require.NoError(t, err)
			require.Equal(t, mod, wasmBack)

			// Pull by tag with Istio's own fetcher: the digest it reports is the
			// one a WasmPlugin pins, and the binary is the module.
			fetch, digestHex, err := wasm.NewImageFetcher(context.Background(), wasm.ImageFetcherOption{Insecure: true}).PrepareFetch(ref)
			require.NoError(t, err)
			require.Equal(t, want.Hex, digestHex)
			bin, err := fetch()
			require.NoError(t, err)
			require.Equal(t, mod, bin)
		})
	}
}

func TestSidecarImage(t *testing.T) {
	files := []File{
		{Path: "/usr/local/bin/shepherd-sidecar", Mode: 0o755, Data: []byte("sidecar")},
		{Path: "/usr/local/bin/shepherdctl", Mode: 0o755, Data: []byte("ctl")},
	}
	img, err := SidecarImage(files, "arm64", []string{"/usr/local/bin/shepherd-sidecar"})
	require.NoError(t, err)
	cfg, err := img.ConfigFile()
	require.NoError(t, err)
	require.Equal(t, "65532:65532", cfg.Config.User)
	require.Equal(t, []string{"/usr/local/bin/shepherd-sidecar"}, cfg.Config.Entrypoint)
	require.Equal(t, "linux", cfg.OS)
	require.Equal(t, "arm64", cfg.Architecture)

	layers, err := img.Layers()
	require.NoError(t, err)
	require.Len(t, layers, 1)
	rc, err := layers[0].Uncompressed()
	require.NoError(t, err)
	defer rc.Close()
	tr := tar.NewReader(rc)
	type entry struct {
		mode int64
		uid  int
		data string
	}
	got := map[string]entry{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		data, err := io.ReadAll(tr)
		require.NoError(t, err)
		require.True(t, h.ModTime.IsZero() || h.ModTime.Unix() == 0, "zero timestamps")
		got[h.Name] = entry{h.Mode, h.Uid, string(data)}
	}
	require.Equal(t, map[string]entry{
		"usr/":                           {0o755, 0, ""},
		"usr/local/":                     {0o755, 0, ""},
		"usr/local/bin/":                 {0o755, 0, ""},
		"usr/local/bin/shepherd-sidecar": {0o755, 0, "sidecar"},
		"usr/local/bin/shepherdctl":      {0o755, 0, "ctl"},
	}, got)

	_, err = SidecarImage(nil, "amd64", nil)
	require.EqualError(t, err, "sidecar image: no files")
	_, err = SidecarImage([]File{{Path: "relative", Mode: 0o755}}, "amd64", nil)
	require.EqualError(t, err, `layer file "relative": path must be absolute`)
}

func TestWriteLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "layout")
	img, err := WasmImage(module("layout"), VariantOCI)
	require.NoError(t, err)
	want, _ := img.Digest()
	// Twice: the second write replaces the first layout.
	for range 2 {
		require.NoError(t, WriteLayout(dir, img, "ghcr.io/shepherd-mesh/shepherd-filter:dev"))
	}
	p, err := layout.FromPath(dir)
	require.NoError(t, err)
	idx, err := p.ImageIndex()
	require.NoError(t, err)
	im, err := idx.IndexManifest()
	require.NoError(t, err)
	require.Len(t, im.Manifests, 1)
	require.Equal(t, want, im.Manifests[0].Digest)
	require.Equal(t, "ghcr.io/shepherd-mesh/shepherd-filter:dev", im.Manifests[0].Annotations["org.opencontainers.image.ref.name"])
	back, err := p.Image(want)
	require.NoError(t, err)
	b, err := WasmFromImage(back)
	require.NoError(t, err)
	require.Equal(t, module("layout"), b)

	other := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(other, "keep.txt"), []byte("x"), 0o644))
	require.EqualError(t, WriteLayout(other, img, ""), "layout "+other+": exists and is not an OCI image layout; not replacing it")
}

// TestLayoutsConformToTheOCISchemas writes both images as `make image` does
// and checks the layouts against the OCI image spec's JSON schemas; each
// broken layout fails with its reason.
func TestLayoutsConformToTheOCISchemas(t *testing.T) {
	wasmImg, err := WasmImage(module("a"), VariantOCI)
	require.NoError(t, err)
	sidecarImg, err := SidecarImageOf([]byte("\x7fELF-sidecar"), []byte("\x7fELF-ctl"), "amd64")
	require.NoError(t, err)
	cfg, err := sidecarImg.ConfigFile()
	require.NoError(t, err)
	cfg = cfg.DeepCopy()
	cfg.RootFS.Type = "" // what the sidecar image had before
	noRootFS, err := mutate.ConfigFile(sidecarImg, cfg)
	require.NoError(t, err)
	dockerImg, err := WasmImage(module("a"), VariantDocker)
	require.NoError(t, err)

	tests := []struct {
		name string
		img  v1.Image
		ref  string
		want []string
	}{
		{"filter", wasmImg, "dev", nil},
		{"sidecar", sidecarImg, "v1.2.3", nil},
		{"no ref.name", wasmImg, "", []string{"no org.opencontainers.image.ref.name annotation"}},
		{"rootfs.type empty", noRootFS, "dev", []string{"config: ", "rootfs/type"}},
		{"docker media types", dockerImg, "dev", []string{"media type application/vnd.docker.distribution.manifest.v2+json is not an OCI image manifest"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "layout")
			require.NoError(t, WriteLayout(dir, tt.img, tt.ref))
			err := CheckLayout(dir)
			if tt.want == nil {
				require.NoError(t, err)
				cfg, err := tt.img.ConfigFile()
				require.NoError(t, err)
				require.Equal(t, RootFSType, cfg.RootFS.Type)
				return
			}
			require.Error(t, err)
			for _, w := range tt.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}
