// Package oci builds shepherd's container images without a container engine:
// the filter's .wasm as an image that Istio's WasmPlugin pulls (`oci://`), and
// the sidecar's static binaries on an empty base. Images are reproducible: the
// same input bytes always give the same digest (no timestamps, fixed file
// modes and owners), so a WasmPlugin can pin the digest of a build.
//
// Istio's image fetcher (istio.io/istio/pkg/wasm) accepts three layouts; this
// package builds the two "compat" ones, which hold a tar+gzip layer with the
// module as `plugin.wasm`:
//
//   - VariantOCI: an OCI image manifest with one
//     `application/vnd.oci.image.layer.v1.tar+gzip` layer (the default);
//   - VariantDocker: a Docker v2 schema 2 manifest with one
//     `application/vnd.docker.image.rootfs.diff.tar.gzip` layer, for registries
//     that do not take OCI manifests.
//
// Istio's third layout, the solo.io "oci" artifact variant (two layers, one of
// type application/vnd.module.wasm.content.layer.v1+wasm), is not built.
package oci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Variant is an image layout Istio's WasmPlugin can pull.
type Variant string

// The variants this package builds.
const (
	VariantOCI    Variant = "oci"
	VariantDocker Variant = "docker"
)

// WasmFileName is the name Istio looks for inside the layer of a compat image.
const WasmFileName = "plugin.wasm"

// wasmMagic starts every WebAssembly binary module: "\0asm" and version 1.
var wasmMagic = []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}

// ParseVariant returns the variant named s ("oci" or "docker").
func ParseVariant(s string) (Variant, error) {
	switch v := Variant(s); v {
	case VariantOCI, VariantDocker:
		return v, nil
	}
	return "", fmt.Errorf("variant %q: want %q or %q", s, VariantOCI, VariantDocker)
}

func (v Variant) mediaTypes() (manifest, config, layer types.MediaType) {
	if v == VariantDocker {
		return types.DockerManifestSchema2, types.DockerConfigJSON, types.DockerLayer
	}
	return types.OCIManifestSchema1, types.OCIConfigJSON, types.OCILayer
}

// File is one regular file of an image layer.
type File struct {
	Path string // absolute path inside the image, such as /usr/local/bin/shepherd-sidecar
	Mode int64  // permission bits, such as 0o755
	Data []byte
}

// WasmImage returns the image holding module as plugin.wasm, in variant v.
// module must be a WebAssembly binary.
func WasmImage(module []byte, v Variant) (v1.Image, error) {
	if !bytes.HasPrefix(module, wasmMagic) {
		return nil, errors.New("wasm module: not a WebAssembly binary (missing \\0asm version 1 header)")
	}
	if _, err := ParseVariant(string(v)); err != nil {
		return nil, err
	}
	manifestType, configType, layerType := v.mediaTypes()
	layer, err := Layer([]File{{Path: "/" + WasmFileName, Mode: 0o444, Data: module}}, layerType)
	if err != nil {
		return nil, err
	}
	cfg := &v1.ConfigFile{OS: "wasip1", Architecture: "wasm", RootFS: v1.RootFS{Type: RootFSType}}
	return image(cfg, layer, manifestType, configType)
}

// RootFSType is the only rootfs.type the OCI image spec allows (config.md).
const RootFSType = "layers"

// SidecarUser is the numeric user and group the sidecar image runs as
// (distroless's "nonroot").
const SidecarUser = "65532:65532"

// SidecarImage returns a Linux image for arch holding the given files (the
// static shepherd-sidecar and shepherdctl binaries) on an empty base, running
// entrypoint as SidecarUser. It uses OCI media types.
func SidecarImage(files []File, arch string, entrypoint []string) (v1.Image, error) {
	if len(files) == 0 {
		return nil, errors.New("sidecar image: no files")
	}
	if arch == "" {
		return nil, errors.New("sidecar image: architecture not set")
	}
	layer, err := Layer(files, types.OCILayer)
	if err != nil {
		return nil, err
	}
	cfg := &v1.ConfigFile{
		OS:           "linux",
		Architecture: arch,
		RootFS:       v1.RootFS{Type: RootFSType},
		Config: v1.Config{
			User:       SidecarUser,
			Entrypoint: entrypoint,
			WorkingDir: "/",
			Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
			Labels:     map[string]string{"org.opencontainers.image.source": "https://github.com/shepherd-mesh/shepherd"},
		},
	}
	return image(cfg, layer, types.OCIManifestSchema1, types.OCIConfigJSON)
}

// Sidecar image paths: the entrypoint and the operators' CLI.
const (
	SidecarEntrypoint = "/usr/local/bin/shepherd-sidecar"
	SidecarCtlPath    = "/usr/local/bin/shepherdctl"
)

// SidecarImageOf is the sidecar image `make image` builds: the static Linux
// binaries shepherd-sidecar (the entrypoint) and shepherdctl for arch.
func SidecarImageOf(sidecar, ctl []byte, arch string) (v1.Image, error) {
	return SidecarImage([]File{
		{Path: SidecarEntrypoint, Mode: 0o755, Data: sidecar},
		{Path: SidecarCtlPath, Mode: 0o755, Data: ctl},
	}, arch, []string{SidecarEntrypoint})
}

func image(cfg *v1.ConfigFile, layer v1.Layer, manifestType, configType types.MediaType) (v1.Image, error) {
	img, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	img = mutate.MediaType(img, manifestType)
	img = mutate.ConfigMediaType(img, configType)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: layerType(layer),
		History: v1.History{CreatedBy: "shepherd-image"}})
	if err != nil {
		return nil, fmt.Errorf("image layer: %w", err)
	}
	return img, nil
}

func layerType(l v1.Layer) types.MediaType {
	mt, err := l.MediaType()
	if err != nil {
		return types.OCILayer
	}
	return mt
}

// Layer returns a reproducible tar+gzip layer of media type mt holding files and
// their parent directories, owned by root, with zero timestamps.
func Layer(files []File, mt types.MediaType) (v1.Layer, error) {
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	dirs := map[string]bool{}
	sorted := append([]File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	for _, f := range sorted {
		p := path.Clean(f.Path)
		if !path.IsAbs(p) || p == "/" {
			return nil, fmt.Errorf("layer file %q: path must be absolute", f.Path)
		}
		var parents []string
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d[1:] + "/", Mode: 0o755, Format: tar.FormatPAX}); err != nil {
				return nil, fmt.Errorf("layer directory %s: %w", d, err)
			}
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: p[1:], Mode: f.Mode, Size: int64(len(f.Data)), Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer file %s: %w", p, err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, fmt.Errorf("layer file %s: %w", p, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer tar: %w", err)
	}
	var gzBuf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gzBuf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(tarBuf.Bytes()); err != nil {
		return nil, fmt.Errorf("layer gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("layer gzip: %w", err)
	}
	gz := gzBuf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gz)), nil
	}, tarball.WithMediaType(mt))
}

// RefNameAnnotation names an image of a layout's index (image-layout.md):
// tools address it as <layout>:<ref>, such as umoci's and skopeo's
// oci:bin/oci/shepherd-filter:dev.
const RefNameAnnotation = "org.opencontainers.image.ref.name"

// WriteLayout writes img as the only image of the OCI image layout at dir,
// tagged ref (the RefNameAnnotation; empty for none).
// dir must not exist, be empty, or hold an OCI layout, which is replaced.
func WriteLayout(dir string, img v1.Image, ref string) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
			return fmt.Errorf("layout %s: exists and is not an OCI image layout; not replacing it", dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("layout %s: %w", dir, err)
		}
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("layout %s: %w", dir, err)
	}
	var opts []layout.Option
	if ref != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{RefNameAnnotation: ref}))
	}
	if err := p.AppendImage(img, opts...); err != nil {
		return fmt.Errorf("layout %s: %w", dir, err)
	}
	return nil
}

// Push uploads img to ref (a tag or digest reference such as
// registry.example.com/shepherd/filter:v1) with the credentials of the
// default keychain (docker config, credential helpers) and returns the
// digest reference that was pushed. insecure allows plain HTTP.
func Push(ref string, img v1.Image, insecure bool, opts ...remote.Option) (name.Digest, error) {
	var nameOpts []name.Option
	if insecure {
		nameOpts = append(nameOpts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nameOpts...)
	if err != nil {
		return name.Digest{}, fmt.Errorf("push: reference %q: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return name.Digest{}, fmt.Errorf("push: digest: %w", err)
	}
	opts = append([]remote.Option{remote.WithAuthFromKeychain(authn.DefaultKeychain)}, opts...)
	if err := remote.Write(r, img, opts...); err != nil {
		return name.Digest{}, fmt.Errorf("push %s: %w", ref, err)
	}
	return r.Context().Digest(d.String()), nil
}

// WasmPluginURL is the url a WasmPlugin pins: oci://<repository>@<digest>.
func WasmPluginURL(repository string, digest v1.Hash) string {
	return "oci://" + repository + "@" + digest.String()
}

// WasmFromImage extracts plugin.wasm from a compat image of either variant, as
// Istio's fetcher does: the last layer must be a tar+gzip layer of the
// variant's media type, holding a file named plugin.wasm.
func WasmFromImage(img v1.Image) ([]byte, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("image layers: %w", err)
	}
	if len(layers) == 0 {
		return nil, errors.New("image: no layers")
	}
	l := layers[len(layers)-1]
	mt, err := l.MediaType()
	if err != nil {
		return nil, fmt.Errorf("layer media type: %w", err)
	}
	if mt != types.OCILayer && mt != types.DockerLayer {
		return nil, fmt.Errorf("layer media type %s: want %s or %s", mt, types.OCILayer, types.DockerLayer)
	}
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("layer: no %s", WasmFileName)
		}
		if err != nil {
			return nil, fmt.Errorf("layer tar: %w", err)
		}
		if path.Base(h.Name) == WasmFileName {
			return io.ReadAll(tr)
		}
	}
}
