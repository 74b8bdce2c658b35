// Package redistest runs a throwaway redis-server for tests.
//
// Start launches one server per test binary on a free loopback port, with
// persistence off, and returns its address. Tests share it: give each test its
// own key prefix or database, or FLUSHDB between cases. Packages that use it
// call Main from TestMain, which kills the server when the tests are done; on
// Linux the server is also killed if the test binary dies.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// SkipEnv is the environment variable that, set to "1", turns a missing
// redis-server into a skipped test instead of a failure.
const SkipEnv = "SHEPHERD_SKIP_REDIS"

var (
	mu      sync.Mutex
	srv     *server
	cluster []*server
)

type server struct {
	addr string
	dir  string // removed when the server stops, if set
	cmd  *exec.Cmd
	done chan struct{}
}

// Start returns the address (host:port) of a running redis-server. The first
// call starts it; later calls in the same binary reuse it. If redis-server is
// not on PATH the test fails, unless SHEPHERD_SKIP_REDIS=1, in which case it
// is skipped.
func Start(t testing.TB) string {
	t.Helper()
	path := lookPath(t)
	mu.Lock()
	defer mu.Unlock()
	if srv == nil {
		s, err := launch(path, "")
		if err != nil {
			t.Fatalf("start redis-server: %v", err)
		}
		srv = s
	}
	return srv.addr
}

// lookPath finds redis-server, or fails or skips the test.
func lookPath(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(SkipEnv) == "1" {
			t.Skipf("redis-server not found and %s=1: skipping Redis tests", SkipEnv)
		}
		t.Fatalf("redis-server not found on PATH: install it (Debian/Ubuntu: apt-get install redis-server), or set %s=1 to skip Redis tests", SkipEnv)
	}
	return path
}

// Main runs the tests and then stops the server, if one was started. Call it
// from TestMain: func TestMain(m *testing.M) { redistest.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

// Stop kills the servers that are running (the one of Start and the
// cluster of StartCluster). A later Start launches a new one.
func Stop() {
	mu.Lock()
	defer mu.Unlock()
	for _, s := range append(cluster, srv) {
		if s != nil {
			_ = s.cmd.Process.Kill()
			<-s.done
			if s.dir != "" {
				_ = os.RemoveAll(s.dir)
			}
		}
	}
	srv, cluster = nil, nil
}

// launch starts one redis-server; with a non-empty dir it runs as a
// cluster node keeping its cluster state there.
func launch(path, dir string) (*server, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		args := []string{
			"--bind", "127.0.0.1",
			"--port", fmt.Sprint(port),
			"--save", "",
			"--appendonly", "no",
			"--protected-mode", "yes",
		}
		if dir == "" {
			args = append(args, "--dir", os.TempDir())
		} else {
			args = append(args,
				"--dir", dir,
				"--cluster-enabled", "yes",
				"--cluster-config-file", fmt.Sprintf("nodes-%d.conf", port),
				"--cluster-node-timeout", "2000",
			)
		}
		cmd := exec.Command(path, args...)
		dieWithParent(cmd)
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		s := &server{addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd, done: make(chan struct{})}
		go func() { _ = cmd.Wait(); close(s.done) }()
		if err := waitPing(s, 10*time.Second); err != nil {
			_ = cmd.Process.Kill()
			<-s.done
			lastErr = err
			continue
		}
		return s, nil
	}
	return nil, lastErr
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitPing polls the server with PING until it answers PONG, it exits, or
// the timeout passes.
func waitPing(s *server, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("redis-server on %s exited before answering", s.addr)
		default:
		}
		if Ping(s.addr) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("redis-server on %s did not answer PING within %s", s.addr, timeout)
}

// Ping reports whether a Redis server at addr answers PING.
func Ping(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}
