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
	mu  sync.Mutex
	srv *server
)

type server struct {
	addr string
	cmd  *exec.Cmd
	done chan struct{}
}

// Start returns the address (host:port) of a running redis-server. The first
// call starts it; later calls in the same binary reuse it. If redis-server is
// not on PATH the test fails, unless SHEPHERD_SKIP_REDIS=1, in which case it
// is skipped.
func Start(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(SkipEnv) == "1" {
			t.Skipf("redis-server not found and %s=1: skipping Redis tests", SkipEnv)
		}
		t.Fatalf("redis-server not found on PATH: install it (Debian/Ubuntu: apt-get install redis-server), or set %s=1 to skip Redis tests", SkipEnv)
	}
	mu.Lock()
	defer mu.Unlock()
	if srv == nil {
		s, err := launch(path)
		if err != nil {
			t.Fatalf("start redis-server: %v", err)
		}
		srv = s
	}
	return srv.addr
}

// Main runs the tests and then stops the server, if one was started. Call it
// from TestMain: func TestMain(m *testing.M) { redistest.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

// Stop kills the server if one is running. A later Start launches a new one.
func Stop() {
	mu.Lock()
	defer mu.Unlock()
	if srv == nil {
		return
	}
	_ = srv.cmd.Process.Kill()
	<-srv.done
	srv = nil
}

func launch(path string) (*server, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(path,
			"--bind", "127.0.0.1",
			"--port", fmt.Sprint(port),
			"--save", "",
			"--appendonly", "no",
			"--protected-mode", "yes",
			"--dir", os.TempDir(),
		)
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
