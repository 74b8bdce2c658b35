package redistest

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The servers below are dedicated to one test (they carry a password, TLS
// or a role the shared server must not have) and stop at its cleanup.

// StartWith launches a dedicated redis-server on a free loopback port with
// extra config arguments ("--requirepass", "pw", ...) and returns its
// address. It is ready when it answers PING, with PONG or with NOAUTH.
func StartWith(t testing.TB, args ...string) string {
	t.Helper()
	path := lookPath(t)
	s, err := launchWith(path, func(port int) []string {
		return append([]string{"--port", fmt.Sprint(port)}, args...)
	}, plainReady)
	if err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(s.stop)
	return s.addr
}

// TLSFiles are the PEM files of StartTLS: the CA that signed the server's
// certificate and a client certificate, and the name the server's
// certificate carries (it has no IP address, so a client must be told it).
type TLSFiles struct {
	CA, ClientCert, ClientKey string
	ServerName                string
}

// StartTLS launches a dedicated redis-server that speaks only TLS (plain
// port off), with a fresh CA; with clientCerts it requires a client
// certificate signed by that CA (tls-auth-clients yes).
func StartTLS(t testing.TB, clientCerts bool, args ...string) (string, TLSFiles) {
	t.Helper()
	path := lookPath(t)
	dir := t.TempDir()
	files := writeCerts(t, dir)
	auth := "no"
	if clientCerts {
		auth = "yes"
	}
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(files.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(caPEM)
	client, err := tls.LoadX509KeyPair(files.ClientCert, files.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	ready := func(s *server) bool {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 200 * time.Millisecond}, "tcp", s.addr,
			&tls.Config{RootCAs: pool, ServerName: files.ServerName, Certificates: []tls.Certificate{client}, MinVersion: tls.VersionTLS12})
		if err != nil {
			return false
		}
		defer c.Close()
		return pingConn(c)
	}
	s, err := launchWith(path, func(port int) []string {
		return append([]string{
			"--port", "0", "--tls-port", fmt.Sprint(port),
			"--tls-cert-file", filepath.Join(dir, "server.pem"),
			"--tls-key-file", filepath.Join(dir, "server-key.pem"),
			"--tls-ca-cert-file", files.CA,
			"--tls-auth-clients", auth,
		}, args...)
	}, ready)
	if err != nil {
		t.Fatalf("start redis-server with tls: %v", err)
	}
	t.Cleanup(s.stop)
	return s.addr, files
}

// Sentinel is a master, one replica and one Sentinel watching them under
// the master name MasterName, from StartSentinel.
type Sentinel struct {
	MasterName string
	Sentinels  []string
	Master     string
	Replica    string
}

// StartSentinel launches a master, a replica of it and a Sentinel (quorum
// 1) that monitors them, all dedicated to the test, and returns once the
// Sentinel knows the replica. args are given to the master and the replica
// (a --requirepass there needs a matching --masterauth).
func StartSentinel(t testing.TB, args ...string) *Sentinel {
	t.Helper()
	path := lookPath(t)
	args = append([]string{"--repl-diskless-sync-delay", "0"}, args...)
	master := StartWith(t, args...)
	replica := StartWith(t, append([]string{"--replicaof", "127.0.0.1", portOf(master)}, args...)...)
	dir := t.TempDir()
	var password string
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--masterauth" {
			password = args[i+1]
		}
	}
	// The Sentinel finds replicas in the master's INFO, which it reads at
	// once and then every 10 s: start it once the master lists the replica.
	mc := redis.NewClient(&redis.Options{Addr: master, Password: password})
	defer mc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		info, err := mc.Info(ctx, "replication").Result()
		if err == nil && strings.Contains(info, "connected_slaves:1") && strings.Contains(info, "state=online") {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the replica did not join the master: %q %v", info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s, err := launchWith(path, func(port int) []string {
		conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", port))
		lines := []string{
			fmt.Sprintf("port %d", port),
			"bind 127.0.0.1",
			"dir " + dir,
			"sentinel monitor shepherd 127.0.0.1 " + portOf(master) + " 1",
			"sentinel down-after-milliseconds shepherd 1000",
			"sentinel failover-timeout shepherd 5000",
		}
		if password != "" {
			lines = append(lines, "sentinel auth-pass shepherd "+password)
		}
		if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			return nil
		}
		return []string{conf, "--sentinel"}
	}, plainReady)
	if err != nil {
		t.Fatalf("start redis sentinel: %v", err)
	}
	t.Cleanup(s.stop)
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.addr})
	defer sc.Close()
	for {
		reps, err := sc.Replicas(ctx, "shepherd").Result()
		if err == nil && len(reps) == 1 && reps[0]["flags"] == "slave" && reps[0]["master-link-status"] == "ok" {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("sentinel did not find the replica: %v %v", reps, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &Sentinel{MasterName: "shepherd", Sentinels: []string{s.addr}, Master: master, Replica: replica}
}

// Failover makes the Sentinel promote the replica and waits until it
// names the replica as the master and the old master has become a replica
// (password: the servers' own, if they have one).
func (s *Sentinel) Failover(t testing.TB, password string) {
	t.Helper()
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinels[0]})
	defer sc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := sc.Failover(ctx, s.MasterName).Err(); err != nil {
		t.Fatalf("sentinel failover: %v", err)
	}
	for {
		addr, err := sc.GetMasterAddrByName(ctx, s.MasterName).Result()
		if err == nil && len(addr) == 2 && addr[0]+":"+addr[1] == s.Replica {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("sentinel did not switch to %s: %v %v", s.Replica, addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The Sentinel turns the old master into a replica only when its next
	// INFO (every 10 s) finds it still a master; do it at once, as it would.
	old := redis.NewClient(&redis.Options{Addr: s.Master, Password: password})
	defer old.Close()
	if err := old.Do(ctx, "REPLICAOF", "127.0.0.1", portOf(s.Replica)).Err(); err != nil {
		t.Fatalf("replicaof: %v", err)
	}
	for {
		info, err := old.Info(ctx, "replication").Result()
		if err == nil && strings.Contains(info, "role:slave") {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the old master %s did not become a replica: %v", s.Master, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.Master, s.Replica = s.Replica, s.Master
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

func (s *server) stop() {
	_ = s.cmd.Process.Kill()
	<-s.done
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

// launchWith starts redis-server with the arguments args gives for a free
// port, retrying on another port if it does not come up.
func launchWith(path string, args func(port int) []string, ready func(*server) bool) (*server, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		a := args(port)
		if a == nil {
			return nil, fmt.Errorf("cannot prepare the arguments for port %d", port)
		}
		// A directory of its own: a replica writes the master's snapshot there.
		dir, err := os.MkdirTemp("", "shepherd-redis-")
		if err != nil {
			return nil, err
		}
		a = append(a, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
		cmd := exec.Command(path, a...)
		dieWithParent(cmd)
		if err := cmd.Start(); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		s := &server{addr: fmt.Sprintf("127.0.0.1:%d", port), dir: dir, cmd: cmd, done: make(chan struct{})}
		go func() { _ = cmd.Wait(); close(s.done) }()
		deadline := time.Now().Add(10 * time.Second)
		for !ready(s) {
			select {
			case <-s.done:
				lastErr = fmt.Errorf("redis-server on %s exited before answering", s.addr)
			default:
				if time.Now().After(deadline) {
					lastErr = fmt.Errorf("redis-server on %s did not answer within 10s", s.addr)
				}
			}
			if lastErr != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if lastErr == nil {
			return s, nil
		}
		s.stop()
	}
	return nil, lastErr
}

// plainReady reports whether the server answers PING on plain TCP, with
// PONG or with NOAUTH (it has a password).
func plainReady(s *server) bool {
	c, err := net.DialTimeout("tcp", s.addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	return pingConn(c)
}

func pingConn(c net.Conn) bool {
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && (strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH"))
}

// writeCerts writes a CA, a server certificate for "redis.test" (no IP
// address) and a client certificate into dir.
func writeCerts(t testing.TB, dir string) TLSFiles {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	writeKey := func(name string, k *ecdsa.PrivateKey) string {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name, "EC PRIVATE KEY", der)
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "shepherd test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(serial int64, name string, usage x509.ExtKeyUsage, dns []string) ([]byte, *ecdsa.PrivateKey) {
		k := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name}, DNSNames: dns,
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	f := TLSFiles{CA: write("ca.pem", "CERTIFICATE", caDER), ServerName: "redis.test"}
	srvDER, srvKey := issue(2, "redis.test", x509.ExtKeyUsageServerAuth, []string{"redis.test"})
	write("server.pem", "CERTIFICATE", srvDER)
	writeKey("server-key.pem", srvKey)
	cliDER, cliKey := issue(3, "shepherd-sidecar", x509.ExtKeyUsageClientAuth, nil)
	f.ClientCert = write("client.pem", "CERTIFICATE", cliDER)
	f.ClientKey = writeKey("client-key.pem", cliKey)
	return f
}
