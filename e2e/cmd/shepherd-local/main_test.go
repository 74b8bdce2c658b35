package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/e2e/envoy"
	"github.com/shepherd-mesh/shepherd/internal/testutil"
)

// buildGuest compiles the host's test plugin (mode chosen by its configuration).
func buildGuest(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "guest.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, "../../envoy/testdata/guest")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, string(b))
	return out
}

func TestFlagErrorsNameTheFlag(t *testing.T) {
	wasm := filepath.Join(t.TempDir(), "x.wasm")
	require.NoError(t, os.WriteFile(wasm, []byte("\x00asm"), 0o644))
	tests := []struct {
		args []string
		want string
	}{
		{nil, "--wasm: must name the plugin file (or run --no-plugin)"},
		{[]string{"--no-plugin", "--wasm", wasm}, "--no-plugin: leave out --wasm"},
		{[]string{"--wasm", "/does/not/exist.wasm"}, "--wasm: open /does/not/exist.wasm"},
		{[]string{"--wasm", wasm, "--cluster", "bad"}, `want NAME=VALUE, got "bad"`},
		{[]string{"--wasm", wasm, "--cluster", "up=nohostport"}, "--cluster up: address nohostport: missing port"},
		{[]string{"--wasm", wasm, "--route", "a.example=missing"}, `--route a.example: unknown cluster "missing"`},
		{[]string{"--wasm", wasm, "--default-cluster", "missing"}, `--default-cluster: unknown cluster "missing"`},
		{[]string{"--wasm", wasm, "--workers", "0"}, "--workers: must be at least 1, got 0"},
		{[]string{"--wasm", wasm, "--log-level", "loud"}, `--log-level: unknown log level "loud"`},
		{[]string{"--wasm", wasm, "--plugin-config", "/does/not/exist.json"}, "--plugin-config: open /does/not/exist.json"},
		{[]string{"--wasm", wasm, "--route-timeout", "-1s"}, "--route-timeout: must not be negative, got -1s"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			_, err := parseFlags(tc.args, io.Discard)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// --no-plugin runs the router alone, the baseline a plugin's cost is
// measured against.
func TestNoPluginFlag(t *testing.T) {
	o, err := parseFlags([]string{"--no-plugin", "--cluster", "up=127.0.0.1:9", "--default-cluster", "up"}, io.Discard)
	require.NoError(t, err)
	require.True(t, o.cfg.NoPlugin)
	require.Empty(t, o.cfg.Module)
	require.Equal(t, 15*time.Second, o.cfg.RouteTimeout, "Envoy's default route timeout")
	o2, err := parseFlags([]string{"--no-plugin", "--route-timeout", "0"}, io.Discard)
	require.NoError(t, err)
	require.Negative(t, o2.cfg.RouteTimeout, "--route-timeout 0 disables it")
	h, err := envoy.New(context.Background(), o.cfg)
	require.NoError(t, err, "the host accepts the configuration")
	require.NoError(t, h.Close(context.Background()))
}

func TestRoundTripPlainAndSSE(t *testing.T) {
	wasm := buildGuest(t)
	next := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/sse" {
			w.Header().Set("Content-Type", "text/event-stream")
			rc := http.NewResponseController(w)
			for i := 0; i < 3; i++ {
				fmt.Fprintf(w, "data: %d\n\n", i)
				_ = rc.Flush()
				select {
				case <-next:
				case <-r.Context().Done():
					return
				}
			}
			return
		}
		fmt.Fprintf(w, "hello %s x-guest=%s", r.URL.Path, r.Header.Get("x-guest"))
	}))
	defer up.Close()

	cfg := filepath.Join(t.TempDir(), "plugin.cfg")
	require.NoError(t, os.WriteFile(cfg, []byte("basic"), 0o644))
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan addrs, 1)
	done := make(chan error, 1)
	stdout := &testutil.SyncBuffer{}
	go func() {
		done <- run(ctx, []string{"--wasm", wasm, "--plugin-config", cfg, "--workers", "2",
			"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
			"--cluster", "up=" + strings.TrimPrefix(up.URL, "http://"), "--default-cluster", "up",
			"--stats-tag", `route=(_route=\.=(.+?);\.;)`}, stdout, io.Discard, ready)
	}()
	var a addrs
	select {
	case <-time.After(time.Minute):
		t.Fatal("shepherd-local did not start within a minute")
	case a = <-ready:
	case err := <-done:
		t.Fatalf("run ended early: %v", err)
	}

	resp, err := http.Get("http://" + a.Listen + "/plain")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "hello /plain x-guest=1", string(body))
	require.Equal(t, "ok", resp.Header.Get("x-resp"))

	resp, err = http.Get("http://" + a.Listen + "/sse")
	require.NoError(t, err)
	rd := bufio.NewReader(resp.Body)
	for i := 0; i < 3; i++ {
		line, err := rd.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("data: %d\n", i), line)
		_, _ = rd.ReadString('\n')
		next <- struct{}{}
	}
	resp.Body.Close()

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + a.Admin + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, text := get("/stats/prometheus")
	require.Equal(t, 200, code)
	require.Contains(t, text, "guest_requests_total{} 2\n")
	require.Contains(t, text, `guest_calls_total{route="chat"} 4`)
	code, text = get("/ready")
	require.Equal(t, 200, code)
	require.Equal(t, "LIVE\n", text)
	_, text = get("/logs")
	require.Contains(t, text, "wasm log shepherd shepherd shepherd: started in mode basic")

	// SIGHUP reloads the plugin configuration file.
	require.NoError(t, os.WriteFile(cfg, []byte("replace"), 0o644))
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	require.Eventually(t, func() bool { return strings.Contains(stdout.String(), "plugin configuration reloaded") },
		30*time.Second, 10*time.Millisecond)
	resp, err = http.Get("http://" + a.Listen + "/plain")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 418, resp.StatusCode)

	cancel()
	require.NoError(t, testutil.Receive(t, done, time.Minute))
	require.Contains(t, stdout.String(), "listening on http://"+a.Listen)
}

// TestEnvoyConfigServesTheBootstrap: --envoy-config serves a static Envoy
// bootstrap (e2e/envoy/testdata/bootstrap/routes.yaml), its clusters pointed at
// local upstreams by --cluster and its code replaced by --wasm.
func TestEnvoyConfigServesTheBootstrap(t *testing.T) {
	wasm := buildGuest(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "primary %s", r.URL.Path)
	}))
	defer up.Close()
	bootstrap := "../../envoy/testdata/bootstrap/routes.yaml"
	a, stop := startBootstrap(t, bootstrap, wasm, up.URL)
	for _, tc := range []struct {
		path   string
		status int
		body   string
	}{
		{"/v1/chat", 200, "primary /v1/chat"},
		{"/gone", 410, "gone for good"},
	} {
		resp, err := http.Get("http://" + a.Listen + tc.path)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, tc.status, resp.StatusCode)
		require.Equal(t, tc.body, string(body))
		require.Equal(t, "envoy", resp.Header.Get("server"))
	}
	require.NoError(t, stop())
}

// TestEnvoyConfigServesEveryListener: each listener of the bootstrap is served
// on its own port with its own routes; --wasm replaces the code of every
// listener's filter that names the first one's file.
func TestEnvoyConfigServesEveryListener(t *testing.T) {
	wasm := buildGuest(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "primary %s", r.URL.Path)
	}))
	defer up.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan addrs, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--envoy-config", "../../envoy/testdata/bootstrap/listeners.yaml", "--wasm", wasm,
			"--cluster", "primary=" + strings.TrimPrefix(up.URL, "http://"), "--admin", "127.0.0.1:0", "--workers", "1"},
			io.Discard, io.Discard, ready)
	}()
	var a addrs
	select {
	case a = <-ready:
	case err := <-done:
		t.Fatalf("run ended early: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("shepherd-local did not start")
	}
	require.Len(t, a.Listeners, 1)
	require.NotEqual(t, a.Listen, a.Listeners[0])
	for _, tc := range []struct {
		addr, path string
		status     int
		body       string
	}{
		{a.Listen, "/only-second", 200, "primary /only-second"},
		{a.Listeners[0], "/only-second", 202, "second listener"},
		{a.Listeners[0], "/v1/chat", 404, ""},
	} {
		resp, err := http.Get("http://" + tc.addr + tc.path)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, tc.status, resp.StatusCode, tc.addr+tc.path)
		require.Equal(t, tc.body, string(body))
		require.Equal(t, "envoy", resp.Header.Get("server"))
	}
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("shepherd-local did not stop")
	}
}

func TestEnvoyConfigFlagErrors(t *testing.T) {
	bootstrap := "../../envoy/testdata/bootstrap/routes.yaml"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--envoy-config", bootstrap, "--vm-config", "x"}, "--vm-config: set by --envoy-config; leave it out"},
		{[]string{"--envoy-config", bootstrap, "--route", "a=b"}, "--route: set by --envoy-config"},
		{[]string{"--envoy-config", bootstrap, "--wasm", "/does/not/exist.wasm"}, "--wasm: open /does/not/exist.wasm"},
		{[]string{"--envoy-config", bootstrap}, "vm_config.code.local.filename: open ../../envoy/testdata/bootstrap/guest.wasm"},
		{[]string{"--envoy-config", "/does/not/exist.yaml"}, "--envoy-config: open /does/not/exist.yaml"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			_, err := parseFlags(tc.args, io.Discard)
			require.ErrorContains(t, err, tc.want)
		})
	}
	wasm := filepath.Join(t.TempDir(), "x.wasm")
	require.NoError(t, os.WriteFile(wasm, []byte("\x00asm"), 0o644))
	_, err := parseFlags([]string{"--envoy-config", bootstrap, "--wasm", wasm, "--cluster", "nope=127.0.0.1:1"}, io.Discard)
	require.ErrorContains(t, err, "--cluster nope: not a cluster of the bootstrap")
	o, err := parseFlags([]string{"--envoy-config", bootstrap, "--wasm", wasm, "--route-timeout", "2s"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, 2*time.Second, o.cfg.RouteTimeout)
	require.Equal(t, "guest", o.cfg.PluginName)
	require.Equal(t, "route", string(o.cfg.PluginConfig), "the bootstrap's configuration")
	o, err = parseFlags([]string{"--envoy-config", bootstrap, "--wasm", wasm, "--plugin-config", "{\"x\":1}"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, `{"x":1}`, string(o.cfg.PluginConfig), "--plugin-config replaces it")
}

// pemCert issues a certificate signed by ca (self-signed when ca is nil) and
// returns it with its key as PEM.
func pemCert(t *testing.T, ca *tls.Certificate, cn string, uri string, server bool) (tls.Certificate, []byte, []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	parent, signer := tmpl, any(key)
	switch {
	case ca == nil:
		tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, x509.KeyUsageCertSign
	default:
		parent, signer = ca.Leaf, ca.PrivateKey
		if server {
			tmpl.ExtKeyUsage, tmpl.IPAddresses = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, []net.IP{net.ParseIP("127.0.0.1")}
		} else {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		}
	}
	if uri != "" {
		u, err := url.Parse(uri)
		require.NoError(t, err)
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err)
	pair.Leaf, err = x509.ParseCertificate(der)
	require.NoError(t, err)
	return pair, certPEM, keyPEM
}

// TestEnvoyConfigTLSListenerWithClientCertificates: a bootstrap listener with a
// DownstreamTlsContext requiring client certificates serves TLS, refuses a
// client without a certificate, and hands the plugin the peer's SPIFFE URI SAN
// as connection.uri_san_peer_certificate.
func TestEnvoyConfigTLSListenerWithClientCertificates(t *testing.T) {
	wasm := buildGuest(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "primary")
	}))
	defer up.Close()
	dir := t.TempDir()
	ca, caPEM, _ := pemCert(t, nil, "test ca", "", false)
	_, srvPEM, srvKey := pemCert(t, &ca, "proxy", "", true)
	const spiffe = "spiffe://cluster.local/ns/team-a/sa/chat"
	client, _, _ := pemCert(t, &ca, "chat", spiffe, false)
	for name, data := range map[string][]byte{"ca.pem": caPEM, "server.pem": srvPEM, "server.key": srvKey} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
	}
	boot, err := os.ReadFile("../../envoy/testdata/bootstrap/routes.yaml")
	require.NoError(t, err)
	text := strings.Replace(string(boot), "    filter_chains:\n    - filters:\n", `    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificates: [{certificate_chain: {filename: server.pem}, private_key: {filename: server.key}}]
            validation_context: {trusted_ca: {filename: ca.pem}}
      filters:
`, 1)
	require.Contains(t, text, "DownstreamTlsContext")
	bootstrap := filepath.Join(dir, "envoy.yaml")
	require.NoError(t, os.WriteFile(bootstrap, []byte(text), 0o600))

	a, stop := startBootstrap(t, bootstrap, wasm, up.URL)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	get := func(certs []tls.Certificate) (*http.Response, error) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}}
		defer c.CloseIdleConnections()
		return c.Get("https://" + a.Listen + "/v1/chat")
	}
	resp, err := get([]tls.Certificate{client})
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, hex.EncodeToString([]byte(spiffe)), resp.Header.Get("x-conn-uri_san_peer_certificate"))
	require.Equal(t, "01", resp.Header.Get("x-conn-mtls"))

	_, err = get(nil)
	require.Error(t, err, "a client without a certificate is refused in the handshake")
	require.NoError(t, stop())
}

// startBootstrap runs shepherd-local on bootstrap with one worker, cluster
// primary at upstream and backup nowhere. It returns where it listens and
// stop, which ends it and returns what run returned.
func startBootstrap(t *testing.T, bootstrap, wasm, upstream string) (addrs, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ready := make(chan addrs, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--envoy-config", bootstrap, "--wasm", wasm,
			"--cluster", "primary=" + strings.TrimPrefix(upstream, "http://"), "--cluster", "backup=127.0.0.1:9",
			"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--workers", "1"}, io.Discard, io.Discard, ready)
	}()
	stop := func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("shepherd-local did not stop")
			return nil
		}
	}
	select {
	case a := <-ready:
		return a, stop
	case err := <-done:
		t.Fatalf("run ended early: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("shepherd-local did not start")
	}
	return addrs{}, nil
}
