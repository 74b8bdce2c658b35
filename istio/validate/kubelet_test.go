package validate

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/shepherd-mesh/shepherd/internal/testutil"
)

// This file runs the rendered Deployments' containers as a kubelet would,
// as far as one process on one machine can:
//
//   - the image: the sidecar image `make image` builds from this tree is
//     unpacked into a root directory and its config's entrypoint, command,
//     environment, user and working directory are used; an image shepherd
//     does not build (Redis) runs the host's binary of the container's
//     command;
//   - command and args with the kubelet's rules (command replaces the
//     entrypoint and drops the image's cmd; args replace the cmd);
//   - the environment: the image's, then envFrom, then env, with valueFrom
//     ConfigMap and Secret keys (optional ones may be missing);
//   - volumes: ConfigMaps, Secrets (a missing optional Secret is an empty
//     directory, as the kubelet mounts it) and emptyDirs written to their
//     mount paths under the root, files mode 0644 (defaultMode), group
//     fsGroup;
//   - the security context: run as root, the process is chrooted into the
//     root and runs as runAsUser/runAsGroup with fsGroup as a supplementary
//     group; otherwise absolute mount paths in the environment, arguments and
//     mounted files are prefixed with the root instead;
//   - the network: each pod has its own ports in a cluster; here each
//     containerPort gets a free loopback port, and "host:port" values (and a
//     bare argument equal to a containerPort) naming the pod's own port or a
//     Service's port are rewritten to the loopback port behind it;
//   - readiness: the container's readinessProbe (httpGet or tcpSocket, port
//     by name or number) must pass.

// podNet maps the pods' ports and the Services in front of them to loopback.
type podNet struct {
	objs  []*Object
	ports map[string]map[int32]int // Deployment name -> containerPort -> loopback port
}

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

var hostPort = regexp.MustCompile(`^([A-Za-z0-9.\-]*|\[::\]):([0-9]+)$`)

// rewrite maps an env value or argument naming the pod's own port or a
// Service's port to its loopback address.
func (n *podNet) rewrite(t *testing.T, dep string, v string) string {
	if p, err := strconv.Atoi(v); err == nil {
		if lp, ok := n.ports[dep][int32(p)]; ok {
			return strconv.Itoa(lp)
		}
		return v
	}
	m := hostPort.FindStringSubmatch(v)
	if m == nil {
		return v
	}
	host := m[1]
	port, _ := strconv.Atoi(m[2])
	switch host {
	case "", "0.0.0.0", "127.0.0.1", "localhost", "[::]":
		if lp, ok := n.ports[dep][int32(port)]; ok {
			return fmt.Sprintf("127.0.0.1:%d", lp)
		}
		return v
	}
	svcName := strings.Split(host, ".")[0]
	svc := find(n.objs, "Service", svcName)
	require.NotNil(t, svc, "%s: %q names no Service of the overlay", dep, v)
	s := svc.Value.(*corev1.Service)
	for _, sp := range s.Spec.Ports {
		if int(sp.Port) != port {
			continue
		}
		for _, o := range n.objs {
			d, ok := o.Value.(*appsv1.Deployment)
			if !ok || !labelsMatch(s.Spec.Selector, d.Spec.Template.Labels) {
				continue
			}
			cp := containerPort(t, d, sp.TargetPort)
			lp, ok := n.ports[o.Meta.Name][cp]
			require.True(t, ok, "%s: Service %s port %d: Deployment %s is not running", dep, svcName, port, o.Meta.Name)
			return fmt.Sprintf("127.0.0.1:%d", lp)
		}
		t.Fatalf("%s: %q: Service %s selects no Deployment of the overlay", dep, v, svcName)
	}
	t.Fatalf("%s: %q: Service %s has no port %d", dep, v, svcName, port)
	return v
}

func labelsMatch(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// containerPort resolves a port by name or number among the pod's containers.
func containerPort(t *testing.T, d *appsv1.Deployment, p intstr.IntOrString) int32 {
	t.Helper()
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == p.StrVal {
				return cp.ContainerPort
			}
		}
	}
	t.Fatalf("Deployment %s: no container port named %q", d.Name, p.StrVal)
	return 0
}

// runningPod is a started container.
type runningPod struct {
	name string
	cmd  *exec.Cmd
	logs *testutil.SyncBuffer
	done chan error
}

// stop sends SIGTERM, as the kubelet does, and requires a clean exit within
// the pod's termination grace period.
func (p *runningPod) stop(t *testing.T, grace time.Duration) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup: the process has exited
		require.NoError(t, err, "%s exited with an error after SIGTERM:\n%s", p.name, p.logs.String())
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		p.done <- testutil.Receive(t, p.done, time.Minute)
		t.Fatalf("%s did not stop within its grace period %s:\n%s", p.name, grace, p.logs.String())
	}
}

// podImage is what the test runs for an image reference.
type podImage struct {
	img      v1.Image // unpacked into the root; nil: a host binary
	hostPath string   // the host binary when img is nil
}

// unpack writes img's layers under root.
func unpack(t *testing.T, img v1.Image, root string) {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		require.NoError(t, err)
		p := filepath.Join(root, filepath.Clean("/"+h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			require.NoError(t, os.MkdirAll(p, 0o755))
		case tar.TypeReg:
			require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
			data, err := io.ReadAll(tr)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(p, data, os.FileMode(h.Mode)&0o7777))
		}
	}
}

// startDeployment starts the first container of the Deployment o of objs.
// secrets are the Secrets that exist in the namespace (name -> key -> value).
func startDeployment(t *testing.T, o *Object, objs []*Object, secrets map[string]map[string]string, images map[string]podImage, pn *podNet) *runningPod {
	t.Helper()
	d := o.Value.(*appsv1.Deployment)
	spec := d.Spec.Template.Spec
	require.NotEmpty(t, spec.Containers)
	c := spec.Containers[0]
	asRoot := os.Geteuid() == 0

	root, err := os.MkdirTemp("", "shepherd-pod-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(root) })
	require.NoError(t, os.Chmod(root, 0o755))

	image, ok := images[c.Image]
	require.True(t, ok, "%s: no image for %q", o, c.Image)
	var entrypoint, cmdArgs, imageEnv []string
	workDir, user := "/", ""
	if image.img != nil {
		unpack(t, image.img, root)
		cfg, err := image.img.ConfigFile()
		require.NoError(t, err)
		entrypoint, cmdArgs, imageEnv = cfg.Config.Entrypoint, cfg.Config.Cmd, cfg.Config.Env
		if cfg.Config.WorkingDir != "" {
			workDir = cfg.Config.WorkingDir
		}
		user = cfg.Config.User
	}
	// The kubelet's rules for command and args.
	argv := append(append([]string{}, entrypoint...), cmdArgs...)
	switch {
	case len(c.Command) > 0:
		argv = append(append([]string{}, c.Command...), c.Args...)
	case len(c.Args) > 0:
		argv = append(append([]string{}, entrypoint...), c.Args...)
	}
	require.NotEmpty(t, argv, "%s: nothing to run", o)
	if c.WorkingDir != "" {
		workDir = c.WorkingDir
	}

	// Ports.
	if pn.ports[o.Meta.Name] == nil {
		pn.ports[o.Meta.Name] = map[int32]int{}
	}
	for _, cp := range c.Ports {
		pn.ports[o.Meta.Name][cp.ContainerPort] = freeLoopbackPort(t)
	}

	// Volumes.
	configMap := func(name string) map[string]string {
		for _, x := range objs {
			if cm, ok := x.Value.(*corev1.ConfigMap); ok && x.Meta.Name == name {
				return cm.Data
			}
		}
		return nil
	}
	var mountPaths []string
	for _, vm := range c.VolumeMounts {
		mountPaths = append(mountPaths, vm.MountPath)
	}
	sort.Slice(mountPaths, func(i, j int) bool { return len(mountPaths[i]) > len(mountPaths[j]) })
	hostPath := func(v string) string {
		if asRoot {
			return v
		}
		for _, mp := range mountPaths {
			if v == mp || strings.HasPrefix(v, mp+"/") {
				return filepath.Join(root, v)
			}
		}
		return v
	}
	rewriteText := func(s string) string {
		if asRoot {
			return s
		}
		for _, mp := range mountPaths {
			s = strings.ReplaceAll(s, mp+"/", filepath.Join(root, mp)+"/")
		}
		return s
	}
	var fsGroup int64 = -1
	if sc := spec.SecurityContext; sc != nil && sc.FSGroup != nil {
		fsGroup = *sc.FSGroup
	}
	for _, vm := range c.VolumeMounts {
		var vol *corev1.Volume
		for i := range spec.Volumes {
			if spec.Volumes[i].Name == vm.Name {
				vol = &spec.Volumes[i]
			}
		}
		require.NotNil(t, vol, "%s: volumeMount %s names no volume", o, vm.Name)
		dir := filepath.Join(root, vm.MountPath)
		require.NoError(t, os.MkdirAll(dir, 0o755))
		var files map[string]string
		switch {
		case vol.ConfigMap != nil:
			files = configMap(vol.ConfigMap.Name)
			require.True(t, files != nil || (vol.ConfigMap.Optional != nil && *vol.ConfigMap.Optional),
				"%s: volume %s: ConfigMap %s is not in the overlay", o, vol.Name, vol.ConfigMap.Name)
		case vol.Secret != nil:
			var ok bool
			files, ok = secrets[vol.Secret.SecretName]
			require.True(t, ok || (vol.Secret.Optional != nil && *vol.Secret.Optional),
				"%s: volume %s: Secret %s does not exist and is not optional", o, vol.Name, vol.Secret.SecretName)
		case vol.EmptyDir != nil:
			if fsGroup >= 0 && asRoot {
				require.NoError(t, os.Chown(dir, 0, int(fsGroup)))
				require.NoError(t, os.Chmod(dir, 0o2775))
			}
		default:
			t.Fatalf("%s: volume %s: kind not emulated", o, vol.Name)
		}
		for k, v := range files {
			p := filepath.Join(dir, k)
			require.NoError(t, os.WriteFile(p, []byte(rewriteText(v)), 0o644))
			if fsGroup >= 0 && asRoot {
				require.NoError(t, os.Chown(p, 0, int(fsGroup)))
			}
		}
	}

	// Environment: the image's, envFrom, then env.
	env := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := env[k]; !ok {
			order = append(order, k)
		}
		env[k] = v
	}
	for _, kv := range imageEnv {
		k, v, _ := strings.Cut(kv, "=")
		set(k, v)
	}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			data := configMap(ef.ConfigMapRef.Name)
			require.True(t, data != nil || (ef.ConfigMapRef.Optional != nil && *ef.ConfigMapRef.Optional),
				"%s: envFrom ConfigMap %s is not in the overlay", o, ef.ConfigMapRef.Name)
			for k, v := range data {
				set(ef.Prefix+k, v)
			}
		case ef.SecretRef != nil:
			data, ok := secrets[ef.SecretRef.Name]
			require.True(t, ok || (ef.SecretRef.Optional != nil && *ef.SecretRef.Optional),
				"%s: envFrom Secret %s does not exist", o, ef.SecretRef.Name)
			for k, v := range data {
				set(ef.Prefix+k, v)
			}
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			set(e.Name, e.Value)
		case e.ValueFrom.ConfigMapKeyRef != nil:
			r := e.ValueFrom.ConfigMapKeyRef
			v, ok := configMap(r.Name)[r.Key]
			require.True(t, ok || (r.Optional != nil && *r.Optional), "%s: env %s: ConfigMap %s has no key %s", o, e.Name, r.Name, r.Key)
			if ok {
				set(e.Name, v)
			}
		case e.ValueFrom.SecretKeyRef != nil:
			r := e.ValueFrom.SecretKeyRef
			v, ok := secrets[r.Name][r.Key]
			require.True(t, ok || (r.Optional != nil && *r.Optional), "%s: env %s: Secret %s has no key %s", o, e.Name, r.Name, r.Key)
			if ok {
				set(e.Name, v)
			}
		default:
			t.Fatalf("%s: env %s: valueFrom kind not emulated", o, e.Name)
		}
	}
	var environ []string
	for _, k := range order {
		environ = append(environ, k+"="+hostPath(pn.rewrite(t, o.Meta.Name, env[k])))
	}
	for i := range argv {
		argv[i] = hostPath(pn.rewrite(t, o.Meta.Name, argv[i]))
	}

	// The process.
	var cmd *exec.Cmd
	if image.img != nil {
		if asRoot {
			cmd = exec.Command(argv[0], argv[1:]...)
			cmd.Path = argv[0]
		} else {
			cmd = exec.Command(filepath.Join(root, argv[0]), argv[1:]...)
		}
	} else {
		cmd = exec.Command(image.hostPath, argv[1:]...)
	}
	cmd.Env = environ
	cmd.Dir = workDir
	if !asRoot || image.img == nil {
		cmd.Dir = root
	}
	attr := &syscall.SysProcAttr{Setpgid: true}
	if asRoot {
		uid, gid := idsOf(t, user)
		if sc := spec.SecurityContext; sc != nil {
			if sc.RunAsUser != nil {
				uid = uint32(*sc.RunAsUser)
			}
			if sc.RunAsGroup != nil {
				gid = uint32(*sc.RunAsGroup)
			}
			if sc.RunAsNonRoot != nil && *sc.RunAsNonRoot {
				require.NotZero(t, uid, "%s: runAsNonRoot with user 0", o)
			}
		}
		cred := &syscall.Credential{Uid: uid, Gid: gid}
		if fsGroup >= 0 {
			cred.Groups = []uint32{uint32(fsGroup)}
		}
		attr.Credential = cred
		if image.img != nil {
			attr.Chroot = root
		}
	}
	cmd.SysProcAttr = attr
	logs := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start(), "%s: start %v", o, argv)
	p := &runningPod{name: o.String(), cmd: cmd, logs: logs, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
			}
		}
	})

	// Readiness.
	probe := c.ReadinessProbe
	require.NotNil(t, probe, "%s: no readinessProbe", o)
	ready := func() bool {
		switch {
		case probe.HTTPGet != nil:
			port := pn.ports[o.Meta.Name][containerPort(t, d, probe.HTTPGet.Port)]
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, probe.HTTPGet.Path))
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode >= 200 && resp.StatusCode < 400
		case probe.TCPSocket != nil:
			port := pn.ports[o.Meta.Name][containerPort(t, d, probe.TCPSocket.Port)]
			conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
			if err != nil {
				return false
			}
			conn.Close()
			return true
		}
		t.Fatalf("%s: readinessProbe kind not emulated", o)
		return false
	}
	deadline := time.After(60 * time.Second)
	for !ready() {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("%s exited before it was ready (%v):\n%s", o, err, logs.String())
		case <-deadline:
			t.Fatalf("%s not ready within 60s:\n%s", o, logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return p
}

// idsOf parses an image's "uid:gid" user (numeric, as shepherd's image sets it).
func idsOf(t *testing.T, user string) (uint32, uint32) {
	t.Helper()
	if user == "" {
		return 0, 0
	}
	u, g, _ := strings.Cut(user, ":")
	uid, err := strconv.ParseUint(u, 10, 32)
	require.NoError(t, err, "image user %q", user)
	gid := uid
	if g != "" {
		gid, err = strconv.ParseUint(g, 10, 32)
		require.NoError(t, err, "image user %q", user)
	}
	return uint32(uid), uint32(gid)
}

// templateSecrets reads the Secret templates of istio/base and gives every
// key a test value; optional Secrets (mounted optional: true) are left out,
// as on a cluster where nobody created them.
func templateSecrets(t *testing.T, objs []*Object) map[string]map[string]string {
	t.Helper()
	optional := map[string]bool{}
	for _, o := range objs {
		d, ok := o.Value.(*appsv1.Deployment)
		if !ok {
			continue
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Secret != nil && v.Secret.Optional != nil && *v.Secret.Optional {
				optional[v.Secret.SecretName] = true
			}
		}
	}
	files, err := filepath.Glob(filepath.Join(istioDir, "base", "*.secret.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	out := map[string]map[string]string{}
	for _, f := range files {
		objs, err := Decode(f, mustRead(t, f))
		require.NoError(t, err)
		for _, o := range objs {
			s := o.Value.(*corev1.Secret)
			if optional[o.Meta.Name] {
				continue
			}
			data := map[string]string{}
			for k := range s.StringData {
				data[k] = "test-" + strings.ToLower(k) + "-0123456789abcdef"
			}
			out[o.Meta.Name] = data
		}
	}
	return out
}

// TestDeploymentsRunAsShipped renders every overlay (and the Redis
// component) with kustomize, runs each Deployment's container as a kubelet
// would (see the top of this file) with the Secrets a user creates from the
// templates, and requires it to become ready, serve its metrics, and stop
// cleanly on SIGTERM.
func TestDeploymentsRunAsShipped(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server is a prerequisite of the tests (README); install it")
	}
	sidecarImg := currentSidecarImage(t)
	tests := []struct {
		dir   string
		pods  []string
		redis bool
	}{
		{filepath.Join(istioDir, "overlays", "namespace"), []string{SidecarService}, false},
		{filepath.Join(istioDir, "overlays", "mesh-wide"), []string{SidecarService}, false},
		{filepath.Join(istioDir, "overlays", "gateway"), []string{SidecarService}, false},
		{filepath.Join(istioDir, "overlays", "filter-canary"), []string{SidecarService}, false},
		{filepath.Join("testdata", "with-redis"), []string{"shepherd-redis", SidecarService}, true},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			out, err := Build(tt.dir)
			require.NoError(t, err)
			objs, err := Decode(tt.dir, out)
			require.NoError(t, err)
			var deps []string
			for _, o := range objs {
				if _, ok := o.Value.(*appsv1.Deployment); ok {
					deps = append(deps, o.Meta.Name)
				}
			}
			sort.Strings(deps)
			want := append([]string(nil), tt.pods...)
			sort.Strings(want)
			require.Equal(t, want, deps, "the overlay's Deployments")

			images := map[string]podImage{}
			sc := find(objs, "Deployment", SidecarService).Value.(*appsv1.Deployment)
			images[sc.Spec.Template.Spec.Containers[0].Image] = podImage{img: sidecarImg}
			if tt.redis {
				rd := find(objs, "Deployment", "shepherd-redis").Value.(*appsv1.Deployment)
				bin, err := exec.LookPath(rd.Spec.Template.Spec.Containers[0].Command[0])
				require.NoError(t, err)
				images[rd.Spec.Template.Spec.Containers[0].Image] = podImage{hostPath: bin}
			}
			pn := &podNet{objs: objs, ports: map[string]map[int32]int{}}
			secrets := templateSecrets(t, objs)
			var running []*runningPod
			for _, name := range tt.pods {
				running = append(running, startDeployment(t, find(objs, "Deployment", name), objs, secrets, images, pn))
			}
			sidecar := running[len(running)-1]

			// The sidecar serves its metrics on the port Prometheus is told.
			port := pn.ports[SidecarService][containerPort(t, sc, intstr.FromString("http-metrics"))]
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, sc.Spec.Template.Annotations["prometheus.io/path"]))
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.Contains(t, string(body), "shepherd_sidecar_policy_version")
			require.Equal(t, strconv.Itoa(int(sc.Spec.Template.Spec.Containers[0].Ports[1].ContainerPort)), sc.Spec.Template.Annotations["prometheus.io/port"])
			if tt.redis {
				require.Contains(t, sidecar.logs.String(), `"redis":true`)
			} else {
				require.Contains(t, sidecar.logs.String(), "no admin token: admin calls are refused")
			}
			grace := time.Duration(*sc.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
			for i := len(running) - 1; i >= 0; i-- {
				running[i].stop(t, grace)
			}
			require.Contains(t, sidecar.logs.String(), "sidecar stopped")
		})
	}
}
