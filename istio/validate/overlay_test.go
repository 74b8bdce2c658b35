package validate

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stretchr/testify/require"
	extensions "istio.io/api/extensions/v1alpha1"
	security "istio.io/api/security/v1beta1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/shepherd-mesh/shepherd/build/oci"
	"github.com/shepherd-mesh/shepherd/filter/config"
	"github.com/shepherd-mesh/shepherd/internal/wasmbuild"
)

// istioDir is the repository's istio/ directory.
const istioDir = ".."

var overlays = []string{"namespace", "mesh-wide", "gateway", "filter-canary"}

// currentFilterDigest builds the filter from the current source and returns
// the digest of the image `make image` makes of it.
func currentFilterDigest(t *testing.T) string {
	t.Helper()
	mod, err := wasmbuild.Build("./filter")
	require.NoError(t, err)
	img, err := oci.WasmImage(mod, oci.VariantOCI)
	require.NoError(t, err)
	d, err := img.Digest()
	require.NoError(t, err)
	return d.String()
}

// copyTree copies istio/ (manifests only) to a temporary directory.
func copyTree(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(istioDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(istioDir, path)
		if d.IsDir() {
			if rel == "validate" || rel == "cmd" {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	require.NoError(t, err)
	return dst
}

// TestOverlaysPinTheCurrentFilter rewrites the pins to the image of the
// current filter (as `make image` does) and validates every overlay,
// requiring the newest plugin to pin exactly that digest.
func TestOverlaysPinTheCurrentFilter(t *testing.T) {
	digest := currentFilterDigest(t)
	tree := copyTree(t)
	url := "url=" + oci.WasmPluginURL("ghcr.io/shepherd-mesh/shepherd-filter", mustHash(t, digest)) + "\n"
	require.NoError(t, os.WriteFile(filepath.Join(tree, "plugin", "filter-image.env"), []byte(url), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "overlays", "filter-canary", "canary", "canary-image.env"), []byte(url), 0o644))
	for _, name := range overlays {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, Overlay(filepath.Join(tree, "overlays", name), Options{FilterDigest: digest}))
		})
	}
	// A stale pin is caught.
	err := Overlay(filepath.Join(tree, "overlays", "namespace"), Options{FilterDigest: "sha256:" + repeat("0", 64)})
	require.ErrorContains(t, err, "WasmPlugin llm-apps/shepherd: spec.url: pins "+digest+", the image of the current filter is sha256:000")
}

// TestCommittedOverlays validates the overlays as committed (their pins are
// whatever `make image` last wrote).
func TestCommittedOverlays(t *testing.T) {
	for _, name := range overlays {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, Overlay(filepath.Join(istioDir, "overlays", name), Options{}))
		})
	}
}

// TestOverlayConsumers (issue 23): in sidecar mode the consumer is the
// workload itself, at a gateway the mTLS peer; no overlay keys limits or
// budgets on a header an application sets.
func TestOverlayConsumers(t *testing.T) {
	want := map[string]string{"namespace": "workload", "mesh-wide": "workload", "gateway": "peer", "filter-canary": "workload"}
	for _, name := range overlays {
		t.Run(name, func(t *testing.T) {
			out, err := Build(filepath.Join(istioDir, "overlays", name))
			require.NoError(t, err)
			objs, err := Decode(name, out)
			require.NoError(t, err)
			n := 0
			for _, o := range objs {
				wp, ok := o.Value.(*extensions.WasmPlugin)
				if !ok {
					continue
				}
				js, err := PluginConfig(wp)
				require.NoError(t, err)
				cfg, err := config.Parse(js, func(string) (string, bool) { return "set", true })
				require.NoError(t, err)
				for _, r := range cfg.Routes {
					if r.Consumer.From == config.ConsumerNone {
						continue
					}
					n++
					require.Equal(t, want[name], r.Consumer.From.String(), "%s: route %s", o, r.Name)
				}
			}
			require.NotZero(t, n, "a route with a consumer")
		})
	}
}

// TestOverlayShapes checks what makes each overlay what it is.
func TestOverlayShapes(t *testing.T) {
	build := func(name string) []*Object {
		out, err := Build(filepath.Join(istioDir, "overlays", name))
		require.NoError(t, err)
		objs, err := Decode(name, out)
		require.NoError(t, err)
		return objs
	}
	plugins := func(objs []*Object) map[string]*Object {
		m := map[string]*Object{}
		for _, o := range objs {
			if _, ok := o.Value.(*extensions.WasmPlugin); ok {
				m[o.Meta.Name] = o
			}
		}
		return m
	}
	kinds := func(objs []*Object) []string {
		var k []string
		for _, o := range objs {
			k = append(k, o.Kind)
		}
		sort.Strings(k)
		return k
	}

	ns := build("namespace")
	require.Equal(t, []string{"AuthorizationPolicy", "ConfigMap", "ConfigMap", "ConfigMap", "Deployment", "DestinationRule", "DestinationRule",
		"HorizontalPodAutoscaler", "PeerAuthentication", "Service", "ServiceAccount",
		"ServiceEntry", "ServiceEntry", "WasmPlugin"}, kinds(ns))
	wp := plugins(ns)["shepherd"]
	require.Equal(t, "llm-apps", wp.Meta.Namespace)
	require.Equal(t, map[string]string{"shepherd.io/filter": "enabled"}, wp.Value.(*extensions.WasmPlugin).GetSelector().GetMatchLabels())

	// The callout cluster is Istio's own for the sidecar's Service, in the
	// namespace the overlay puts the Service in; no overlay adds a cluster.
	for _, name := range overlays {
		objs := build(name)
		svc := find(objs, "Service", SidecarService)
		require.NotNil(t, svc, name)
		for _, p := range plugins(objs) {
			js, err := PluginConfig(p.Value.(*extensions.WasmPlugin))
			require.NoError(t, err)
			require.Contains(t, string(js), `"cluster":"outbound|8081||shepherd-sidecar.`+svc.Meta.Namespace+`.svc.cluster.local"`, name)
		}
		require.NotContains(t, kinds(objs), "EnvoyFilter", name)
	}

	// Mesh-wide: every injected sidecar (the label Istio's sidecar
	// injection sets and its gateway templates do not), never a gateway.
	mesh := plugins(build("mesh-wide"))["shepherd"]
	require.Equal(t, "istio-system", mesh.Meta.Namespace)
	require.Equal(t, map[string]string{"security.istio.io/tlsMode": "istio"}, mesh.Value.(*extensions.WasmPlugin).GetSelector().GetMatchLabels())

	gw := plugins(build("gateway"))["shepherd"].Value.(*extensions.WasmPlugin)
	require.Nil(t, gw.GetSelector())
	require.Len(t, gw.GetTargetRefs(), 1)
	require.Equal(t, "Gateway", gw.GetTargetRefs()[0].GetKind())
	require.Equal(t, "llm-gateway", gw.GetTargetRefs()[0].GetName())

	canary := plugins(build("filter-canary"))
	require.Len(t, canary, 2)
	require.Equal(t, "stable", canary["shepherd"].Value.(*extensions.WasmPlugin).GetSelector().GetMatchLabels()["shepherd.io/filter-track"])
	require.Equal(t, "canary", canary["shepherd-canary"].Value.(*extensions.WasmPlugin).GetSelector().GetMatchLabels()["shepherd.io/filter-track"])
}

// TestRedisIsAChoice: the overlays run one sidecar replica on the memory
// store with no PodDisruptionBudget; the Redis components add the Redis
// address, a second replica and the budget (and, for the in-namespace one,
// the Redis Deployment and Service).
func TestRedisIsAChoice(t *testing.T) {
	tests := []struct {
		dir      string
		replicas int32
		redis    string
		pdb      bool
		ownRedis bool
	}{
		{filepath.Join(istioDir, "overlays", "namespace"), 1, "", false, false},
		{filepath.Join(istioDir, "overlays", "mesh-wide"), 1, "", false, false},
		{filepath.Join(istioDir, "overlays", "gateway"), 1, "", false, false},
		{filepath.Join(istioDir, "overlays", "filter-canary"), 1, "", false, false},
		{filepath.Join("testdata", "with-redis"), 2, "shepherd-redis:6379", true, true},
		{filepath.Join("testdata", "with-redis-external"), 2, "redis.example.internal:6379", true, false},
		{filepath.Join("testdata", "with-redis-secure"), 2, "redis.example.internal:6379", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			require.NoError(t, Overlay(tt.dir, Options{}))
			out, err := Build(tt.dir)
			require.NoError(t, err)
			objs, err := Decode(tt.dir, out)
			require.NoError(t, err)
			dep := find(objs, "Deployment", SidecarService)
			require.NotNil(t, dep)
			require.Equal(t, tt.replicas, *dep.Value.(*appsv1.Deployment).Spec.Replicas)
			var env map[string]string
			for _, o := range objs {
				if cm, ok := o.Value.(*corev1.ConfigMap); ok && strings.HasPrefix(o.Meta.Name, "shepherd-sidecar-env") {
					env = cm.Data
				}
			}
			require.NotNil(t, env)
			require.Equal(t, tt.redis, env["SHEPHERD_SIDECAR_REDIS"])
			require.Equal(t, tt.pdb, find(objs, "PodDisruptionBudget", SidecarService) != nil)
			require.Equal(t, tt.ownRedis, find(objs, "Deployment", "shepherd-redis") != nil)
			require.Equal(t, tt.ownRedis, find(objs, "Service", "shepherd-redis") != nil)
		})
	}
}

// TestRedisAuthAndTLSComponents: the redis-auth and redis-tls components
// mount the Secrets the user creates (no credential in the tree) and point
// the sidecar at the files in them.
func TestRedisAuthAndTLSComponents(t *testing.T) {
	dir := filepath.Join("testdata", "with-redis-secure")
	require.NoError(t, Overlay(dir, Options{}))
	out, err := Build(dir)
	require.NoError(t, err)
	objs, err := Decode(dir, out)
	require.NoError(t, err)
	for _, o := range objs {
		_, isSecret := o.Value.(*corev1.Secret)
		require.False(t, isSecret && strings.HasPrefix(o.Meta.Name, "shepherd-redis"), "the Redis Secrets are the user's: %s", o.Meta.Name)
	}
	pod := find(objs, "Deployment", SidecarService).Value.(*appsv1.Deployment).Spec.Template.Spec
	secrets := map[string]string{}
	for _, v := range pod.Volumes {
		if v.Secret != nil {
			secrets[v.Name] = v.Secret.SecretName
		}
	}
	require.Equal(t, "shepherd-redis-auth", secrets["redis-auth"])
	require.Equal(t, "shepherd-redis-tls", secrets["redis-tls"])
	c := pod.Containers[0]
	require.Equal(t, "sidecar", c.Name)
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	require.Equal(t, mounts["redis-auth"]+"/password", env["SHEPHERD_SIDECAR_REDIS_PASSWORD_FILE"])
	require.Equal(t, mounts["redis-tls"]+"/ca.crt", env["SHEPHERD_SIDECAR_REDIS_TLS_CA_FILE"])
}

// TestNamespaceIsSetOnce: changing an overlay's `namespace:` alone moves the
// callout cluster and the sidecar's AuthorizationPolicy along, and the result
// validates (kustomize's namespace transformer rewrites neither by itself).
func TestNamespaceIsSetOnce(t *testing.T) {
	for _, name := range []string{"namespace", "filter-canary", "gateway"} {
		t.Run(name, func(t *testing.T) {
			tree := copyTree(t)
			kfile := filepath.Join(tree, "overlays", name, "kustomization.yaml")
			data, err := os.ReadFile(kfile)
			require.NoError(t, err)
			moved := regexp.MustCompile(`(?m)^namespace: .*$`).ReplaceAllString(string(data), "namespace: team-a")
			require.NotEqual(t, string(data), moved)
			require.NoError(t, os.WriteFile(kfile, []byte(moved), 0o644))

			dir := filepath.Join(tree, "overlays", name)
			require.NoError(t, Overlay(dir, Options{}))
			out, err := Build(dir)
			require.NoError(t, err)
			objs, err := Decode(name, out)
			require.NoError(t, err)
			seen := 0
			for _, o := range objs {
				switch v := o.Value.(type) {
				case *extensions.WasmPlugin:
					seen++
					js, err := PluginConfig(v)
					require.NoError(t, err)
					require.Contains(t, string(js), `"cluster":"outbound|8081||shepherd-sidecar.team-a.svc.cluster.local"`)
				case *security.AuthorizationPolicy:
					seen++
					require.Equal(t, []string{"team-a"}, v.GetRules()[0].GetFrom()[0].GetSource().GetNamespaces())
				}
			}
			require.GreaterOrEqual(t, seen, 2, "a WasmPlugin and the AuthorizationPolicy")
		})
	}
}

func TestBrokenOverlayFailsToBuild(t *testing.T) {
	err := Overlay(filepath.Join("testdata", "broken-overlay"), Options{})
	require.ErrorContains(t, err, "kustomize build testdata/broken-overlay")
	require.ErrorContains(t, err, "missing.yaml")
}

func repeat(s string, n int) string {
	out := ""
	for range n {
		out += s
	}
	return out
}

func mustHash(t *testing.T, digest string) v1.Hash {
	t.Helper()
	h, err := v1.NewHash(digest)
	require.NoError(t, err)
	return h
}
