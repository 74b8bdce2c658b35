package oci

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/image-spec/schema"
)

// CheckLayout checks the OCI image layout at dir against the OCI image
// spec's published JSON schemas (github.com/opencontainers/image-spec/schema):
// the oci-layout file, index.json, and every image's manifest and config.
// It also requires what the schemas leave optional but tools rely on: each
// image in the index is named by a RefNameAnnotation (umoci and skopeo
// address images by it). Images with Docker media types are not checked
// against the OCI schemas; they are reported.
func CheckLayout(dir string) error {
	var errs []error
	check := func(what string, v schema.Validator, data []byte) {
		if err := v.Validate(bytes.NewReader(data)); err != nil {
			errs = append(errs, fmt.Errorf("layout %s: %s: %w", dir, what, err))
		}
	}
	header, err := os.ReadFile(filepath.Join(dir, "oci-layout"))
	if err != nil {
		return fmt.Errorf("layout %s: %w", dir, err)
	}
	check("oci-layout", schema.ValidatorMediaTypeLayoutHeader, header)
	index, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		return fmt.Errorf("layout %s: %w", dir, err)
	}
	check("index.json", schema.ValidatorMediaTypeImageIndex, index)

	p, err := layout.FromPath(dir)
	if err != nil {
		return fmt.Errorf("layout %s: %w", dir, err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return fmt.Errorf("layout %s: %w", dir, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return fmt.Errorf("layout %s: index.json: %w", dir, err)
	}
	if len(im.Manifests) == 0 {
		errs = append(errs, fmt.Errorf("layout %s: index.json: no images", dir))
	}
	for i, d := range im.Manifests {
		what := fmt.Sprintf("index.json manifests[%d] (%s)", i, d.Digest)
		if d.Annotations[RefNameAnnotation] == "" {
			errs = append(errs, fmt.Errorf("layout %s: %s: no %s annotation", dir, what, RefNameAnnotation))
		}
		if d.MediaType != types.OCIManifestSchema1 {
			errs = append(errs, fmt.Errorf("layout %s: %s: media type %s is not an OCI image manifest", dir, what, d.MediaType))
			continue
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			errs = append(errs, fmt.Errorf("layout %s: %s: %w", dir, what, err))
			continue
		}
		raw, err := img.RawManifest()
		if err != nil {
			errs = append(errs, fmt.Errorf("layout %s: %s: %w", dir, what, err))
			continue
		}
		check(what+" manifest", schema.ValidatorMediaTypeManifest, raw)
		var m struct {
			Config struct {
				MediaType string `json:"mediaType"`
			} `json:"config"`
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			errs = append(errs, fmt.Errorf("layout %s: %s manifest: %w", dir, what, err))
			continue
		}
		cfg, err := img.RawConfigFile()
		if err != nil {
			errs = append(errs, fmt.Errorf("layout %s: %s config: %w", dir, what, err))
			continue
		}
		if m.Config.MediaType == string(types.OCIConfigJSON) {
			check(what+" config", schema.ValidatorMediaTypeImageConfig, cfg)
		}
	}
	return errors.Join(errs...)
}
