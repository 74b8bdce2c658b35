package validate

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/build/oci"
	"github.com/shepherd-mesh/shepherd/internal/wasmbuild"
)

// The pin files `make image` writes, relative to istio/.
var (
	filterPins = []string{"plugin/filter-image.env", "overlays/filter-canary/canary/canary-image.env"}
	sidecarPin = "base/sidecar-image.env"
)

// imageArch is the architecture `make image` builds by default (IMAGE_ARCH).
const imageArch = "amd64"

var linuxBins struct {
	once         sync.Once
	sidecar, ctl []byte
	err          error
}

// sidecarBinaries builds shepherd-sidecar and shepherdctl as `make image`
// does: static Linux binaries for imageArch, -trimpath -ldflags="-s -w".
func sidecarBinaries(t *testing.T) (sidecar, ctl []byte) {
	t.Helper()
	linuxBins.once.Do(func() {
		dir, err := os.MkdirTemp("", "shepherd-linux-")
		if err != nil {
			linuxBins.err = err
			return
		}
		defer os.RemoveAll(dir)
		cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", dir+"/",
			"./sidecar/cmd/shepherd-sidecar", "./sidecar/cmd/shepherdctl")
		cmd.Dir = wasmbuild.Root()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+imageArch)
		if out, err := cmd.CombinedOutput(); err != nil {
			linuxBins.err = fmt.Errorf("building the sidecar for linux/%s: %w\n%s", imageArch, err, out)
			return
		}
		if linuxBins.sidecar, linuxBins.err = os.ReadFile(filepath.Join(dir, "shepherd-sidecar")); linuxBins.err != nil {
			return
		}
		linuxBins.ctl, linuxBins.err = os.ReadFile(filepath.Join(dir, "shepherdctl"))
	})
	require.NoError(t, linuxBins.err)
	return linuxBins.sidecar, linuxBins.ctl
}

// currentSidecarImage is the sidecar image `make image` builds from this tree.
func currentSidecarImage(t *testing.T) v1.Image {
	t.Helper()
	sidecar, ctl := sidecarBinaries(t)
	img, err := oci.SidecarImageOf(sidecar, ctl, imageArch)
	require.NoError(t, err)
	return img
}

// pinnedDigest reads key=REF@sha256:... from a pin file.
func pinnedDigest(t *testing.T, rel, key string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(istioDir, rel))
	require.NoError(t, err)
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			return digestOf(v)
		}
	}
	t.Fatalf("%s: no %s= line", rel, key)
	return ""
}

// TestPinsAreThisTreesBuild fails when a committed pin is not the digest of
// the image `make image` builds from this tree (builds are reproducible), so
// a change to the filter or the sidecar cannot land with a stale pin: the
// mesh would run an old filter, or fail to pull one.
func TestPinsAreThisTreesBuild(t *testing.T) {
	filter := currentFilterDigest(t)
	d, err := currentSidecarImage(t).Digest()
	require.NoError(t, err)
	sidecar := d.String()

	var stale []string
	for _, p := range filterPins {
		if got := pinnedDigest(t, p, "url"); got != filter {
			stale = append(stale, fmt.Sprintf("istio/%s pins %s, the filter of this tree builds to %s", p, got, filter))
		}
	}
	if got := pinnedDigest(t, sidecarPin, "image"); got != sidecar {
		stale = append(stale, fmt.Sprintf("istio/%s pins %s, the sidecar of this tree builds to %s", sidecarPin, got, sidecar))
	}
	require.Empty(t, stale, "stale image pins; run `make image` and commit the pin files it writes")
}

// TestThisTreesImagesConform writes the images `make image` builds from this
// tree as OCI layouts and checks them against the OCI image spec's schemas.
func TestThisTreesImagesConform(t *testing.T) {
	mod, err := wasmbuild.Build("./filter")
	require.NoError(t, err)
	filter, err := oci.WasmImage(mod, oci.VariantOCI)
	require.NoError(t, err)
	for name, img := range map[string]v1.Image{"shepherd-filter": filter, "shepherd-sidecar": currentSidecarImage(t)} {
		dir := filepath.Join(t.TempDir(), name)
		require.NoError(t, oci.WriteLayout(dir, img, "dev"))
		require.NoError(t, oci.CheckLayout(dir), name)
		cfg, err := img.ConfigFile()
		require.NoError(t, err)
		require.Equal(t, oci.RootFSType, cfg.RootFS.Type, name)
	}
}
