package nbd

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// server is a real NBD server process serving on a unix socket.
type server struct {
	t      testing.TB
	sock   string
	args   []string
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan struct{}
}

// syncBuffer is a bytes.Buffer safe for the process's output copier and
// the test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServer runs name with args (which must make it listen on sock) and
// waits until the socket accepts connections.
func startServer(t testing.TB, sock, name string, args ...string) *server {
	t.Helper()
	testutil.RequireTools(t, name)
	s := &server{t: t, sock: sock, args: append([]string{name}, args...)}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *server) start() {
	s.t.Helper()
	_ = os.Remove(s.sock)
	s.stderr = &syncBuffer{}
	s.cmd = exec.Command(s.args[0], s.args[1:]...)
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start %v: %v", s.args, err)
	}
	exited := make(chan struct{})
	s.exited = exited
	cmd := s.cmd
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.Dial("unix", s.sock); err == nil {
			_ = c.Close()
			return
		}
		select {
		case <-exited:
			s.t.Fatalf("%v exited early: %s", s.args, s.stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%v did not listen on %s: %s", s.args, s.sock, s.stderr)
		}
	}
}

// stop kills the server and waits for it.
func (s *server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.t.Errorf("%v did not exit after kill", s.args)
	}
	s.cmd = nil
}

// nbdkit starts nbdkit in the foreground with one thread on a new socket.
func nbdkit(t testing.TB, args ...string) *server {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "nbdkit.sock")
	return startServer(t, sock, "nbdkit", append([]string{"-t", "1", "-f", "-U", sock}, args...)...)
}

// qemuNBD starts qemu-nbd on a new socket.
func qemuNBD(t testing.TB, args ...string) *server {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "qemu-nbd.sock")
	return startServer(t, sock, "qemu-nbd", append([]string{"--persistent", "-k", sock}, args...)...)
}

// uri is the nbd+unix URI of the server's export.
func (s *server) uri(export string) string { return UnixTarget(s.sock, export).String() }

// testOptions are quick options for tests.
func testOptions() Options {
	return Options{
		RetryBackoff: 5 * time.Millisecond, MaxRetryBackoff: 50 * time.Millisecond,
		StallTimeout: 10 * time.Second, DialTimeout: 10 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// dialT dials or fails the test, closing the client at the end.
func dialT(t testing.TB, uri string, o Options) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Dial(ctx, uri, o)
	if err != nil {
		t.Fatalf("dial %s: %v", uri, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// span is a data range of a test image.
type span struct{ off, len int64 }

// sparseImage writes a file of size bytes holding random data in spans and
// holes elsewhere.
func sparseImage(t testing.TB, size int64, spans ...span) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.raw")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, s := range spans {
		b := make([]byte, s.len)
		_, _ = rand.Read(b)
		if _, err := f.WriteAt(b, s.off); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// fileSHA is the sha256 of a file.
func fileSHA(t testing.TB, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// readAll reads the whole export through the client.
func readAll(t testing.TB, c *Client) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	buf := make([]byte, c.Size())
	n, err := c.ReadAt(ctx, buf, 0)
	if err != nil || int64(n) != c.Size() {
		t.Fatalf("read whole export: n=%d err=%v", n, err)
	}
	return buf
}
