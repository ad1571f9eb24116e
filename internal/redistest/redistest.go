// Package redistest starts a real redis-server for tests: on a free
// loopback port, with its own data directory and the append-only file on,
// stopped when the test ends. Tests skip, saying why, where the binary is
// absent (testenv.Redis: they fail instead where DSO_TEST_REQUIRE names
// redis, as in CI).
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dso-proxy/dso/internal/testenv"
)

// startTimeout bounds waiting for a started server to answer PING.
const startTimeout = 20 * time.Second

// Server is one redis-server process (and its restarts on the same port
// and directory).
type Server struct {
	Addr string // host:port
	Dir  string // the data directory
	bin  string
	args []string

	mu  sync.Mutex // protects cmd
	cmd *exec.Cmd
}

// Start starts redis-server with appendonly yes and appendfsync always
// (so that an acknowledged write survives SIGKILL and a power cut alike),
// and no RDB snapshots, and waits until it answers. extra arguments are
// appended to the command line.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	s := Reserve(t, extra...)
	if err := s.start(); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return s
}

// Reserve is Start without starting the server: it picks the port and
// directory, and Restart starts it there, for tests of what happens
// before Redis is up.
func Reserve(t testing.TB, extra ...string) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		testenv.Skip(t, testenv.Redis, "no redis-server on PATH for the Redis store tests (Debian: apt-get install redis-server)")
	}
	port, err := freePort()
	if err != nil {
		t.Fatalf("redistest: free port: %v", err)
	}
	dir := t.TempDir()
	s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), Dir: dir, bin: bin}
	s.args = append([]string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "no",
		"--logfile", "redis.log"}, extra...)
	t.Cleanup(s.stop)
	return s
}

// URL is the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.Dir
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting redis-server: %w", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(startTimeout)
	for {
		if err := ping(s.Addr); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			log, _ := os.ReadFile(s.Dir + "/redis.log")
			return fmt.Errorf("redis-server on %s did not answer PING within %v: %v\n%s", s.Addr, startTimeout, err, log)
		}
		time.Sleep(10 * time.Millisecond) // polling PING, not waiting blind
	}
}

// ping sends PING and wants PONG (a server still loading its append-only
// file answers -LOADING).
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// Kill stops the server with SIGKILL, as a crash would, and waits for
// the process to end.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart starts the server again on the same port and directory, so
// that it recovers from its append-only file (or, after Reserve, for the
// first time), and waits until it answers.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatalf("redistest: restart: %v", err)
	}
}

func (s *Server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(syscall.SIGKILL)
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}
