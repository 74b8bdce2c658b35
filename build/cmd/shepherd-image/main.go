// Command shepherd-image builds shepherd's images without a container engine
// and writes them as OCI image layouts, optionally pushing them to a registry.
//
//	shepherd-image wasm    --wasm bin/shepherd.wasm [--variant oci|docker] [--layout DIR] [--tag TAG]
//	                       [--repo REPOSITORY] [--push REF] [--insecure] [--pin FILE]...
//	shepherd-image sidecar --sidecar FILE --ctl FILE [--arch amd64] [--layout DIR] [--tag TAG]
//	                       [--repo REPOSITORY] [--push REF] [--insecure] [--pin FILE]
//
// Each prints the image digest; `wasm` also prints the url a WasmPlugin pins
// (oci://REPOSITORY@sha256:...) and, with --pin, writes it as `url=...` to
// each FILE (the kustomize env files the Istio overlays read); `sidecar` with
// --pin writes `image=REPOSITORY@sha256:...` (istio/base/sidecar-image.env).
// A layout names its image TAG (org.opencontainers.image.ref.name) and an
// OCI layout is checked against the OCI image spec's JSON schemas.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/shepherd-mesh/shepherd/build/oci"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  shepherd-image wasm    --wasm FILE [--variant oci|docker] [--layout DIR] [--tag TAG] [--repo REPOSITORY] [--push REF] [--insecure] [--pin FILE]...
  shepherd-image sidecar --sidecar FILE --ctl FILE [--arch ARCH] [--layout DIR] [--tag TAG] [--repo REPOSITORY] [--push REF] [--insecure] [--pin FILE]
`

// run executes the command; it returns the exit status: 0 success, 1 failure,
// 2 usage error.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "wasm":
		err = runWasm(args[1:], stdout, stderr)
	case "sidecar":
		err = runSidecar(args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "shepherd-image: unknown command %q\n%s", args[0], usage)
		return 2
	}
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "shepherd-image: %v\n%s", err, usage)
		return 2
	default:
		fmt.Fprintf(stderr, "shepherd-image: %v\n", err)
		return 1
	}
}

type usageError struct{ error }

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

func runWasm(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("wasm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	wasmPath := fs.String("wasm", "", "the proxy-wasm module (bin/shepherd.wasm)")
	variant := fs.String("variant", string(oci.VariantOCI), "image variant: oci (OCI media types) or docker (Docker media types)")
	layoutDir := fs.String("layout", "", "write the image as an OCI image layout to this directory")
	repo := fs.String("repo", "ghcr.io/shepherd-mesh/shepherd-filter", "repository named in the printed url (default: that of --push)")
	push := fs.String("push", "", "push to this reference (registry/repository:tag)")
	insecure := fs.Bool("insecure", false, "allow a plain-HTTP registry")
	var pins []string
	fs.Func("pin", "write url=oci://REPOSITORY@DIGEST to this file (repeatable)", func(v string) error {
		pins = append(pins, v)
		return nil
	})
	tag := fs.String("tag", "dev", "the layout's name for the image (org.opencontainers.image.ref.name)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *wasmPath == "" {
		return usageError{errors.New("--wasm is required")}
	}
	v, err := oci.ParseVariant(*variant)
	if err != nil {
		return usageError{err}
	}
	module, err := os.ReadFile(*wasmPath)
	if err != nil {
		return err
	}
	img, err := oci.WasmImage(module, v)
	if err != nil {
		return fmt.Errorf("%s: %w", *wasmPath, err)
	}
	repository, err := repositoryOf(*repo, *push)
	if err != nil {
		return err
	}
	digest, err := write(img, *layoutDir, *push, *insecure, *tag, v == oci.VariantOCI)
	if err != nil {
		return err
	}
	url := oci.WasmPluginURL(repository, digest)
	fmt.Fprintf(stdout, "digest %s\nurl %s\n", digest, url)
	for _, pin := range pins {
		if err := os.WriteFile(pin, []byte("url="+url+"\n"), 0o644); err != nil {
			return fmt.Errorf("--pin: %w", err)
		}
	}
	return nil
}

func runSidecar(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sidecar", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sidecar := fs.String("sidecar", "", "the static linux shepherd-sidecar binary")
	ctl := fs.String("ctl", "", "the static linux shepherdctl binary")
	arch := fs.String("arch", "amd64", "image architecture (GOARCH of the binaries)")
	layoutDir := fs.String("layout", "", "write the image as an OCI image layout to this directory")
	push := fs.String("push", "", "push to this reference (registry/repository:tag)")
	insecure := fs.Bool("insecure", false, "allow a plain-HTTP registry")
	repo := fs.String("repo", "ghcr.io/shepherd-mesh/shepherd-sidecar", "repository named in the pin (default: that of --push)")
	pin := fs.String("pin", "", "write image=REPOSITORY@DIGEST to this file")
	tag := fs.String("tag", "dev", "the layout's name for the image (org.opencontainers.image.ref.name)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *sidecar == "" || *ctl == "" {
		return usageError{errors.New("--sidecar and --ctl are required")}
	}
	var bins [2][]byte
	for i, f := range []string{*sidecar, *ctl} {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if !strings.HasPrefix(string(data[:min(len(data), 4)]), "\x7fELF") {
			return fmt.Errorf("%s: not a Linux (ELF) binary; build it with GOOS=linux CGO_ENABLED=0", f)
		}
		bins[i] = data
	}
	img, err := oci.SidecarImageOf(bins[0], bins[1], *arch)
	if err != nil {
		return err
	}
	repository, err := repositoryOf(*repo, *push)
	if err != nil {
		return err
	}
	digest, err := write(img, *layoutDir, *push, *insecure, *tag, true)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "digest %s\nimage %s@%s\n", digest, repository, digest)
	if *pin != "" {
		if err := os.WriteFile(*pin, []byte("image="+repository+"@"+digest.String()+"\n"), 0o644); err != nil {
			return fmt.Errorf("--pin: %w", err)
		}
	}
	return nil
}

func write(img v1.Image, layoutDir, push string, insecure bool, ref string, check bool) (v1.Hash, error) {
	digest, err := img.Digest()
	if err != nil {
		return v1.Hash{}, err
	}
	if layoutDir != "" {
		if err := oci.WriteLayout(layoutDir, img, ref); err != nil {
			return v1.Hash{}, err
		}
		if check {
			if err := oci.CheckLayout(layoutDir); err != nil {
				return v1.Hash{}, err
			}
		}
	}
	if push != "" {
		if _, err := oci.Push(push, img, insecure); err != nil {
			return v1.Hash{}, err
		}
	}
	return digest, nil
}

// repositoryOf is the repository a pin names: that of the --push reference
// when there is one, else --repo.
func repositoryOf(repo, push string) (string, error) {
	if push == "" {
		return repo, nil
	}
	ref, err := name.ParseReference(push)
	if err != nil {
		return "", usageError{fmt.Errorf("--push %q: %w", push, err)}
	}
	return ref.Context().Name(), nil
}
