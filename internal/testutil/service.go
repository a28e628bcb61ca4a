package testutil

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SharedService is one instance of a slow test service (an object store,
// say) per test binary: started in a temporary directory on first use,
// stopped by Stop, which the binary's TestMain calls. A binary without such
// a TestMain still leaves nothing behind: the directory is removed once the
// process has exited, and the service's processes die with it (Pdeathsig
// is the service's own business).
type SharedService[T interface{ Stop() }] struct {
	// Name is what messages call the service ("Ceph RGW").
	Name string
	// Prefix starts the temporary directory's name ("cairn-rgw-").
	Prefix string
	// Timeout bounds Start.
	Timeout time.Duration
	// Tools are the commands the service needs (RequireTools).
	Tools []string
	// Start starts an instance that keeps its files in dir.
	Start func(ctx context.Context, dir string) (T, error)

	once    sync.Once
	v       T
	err     error
	dir     string
	started bool
}

// Get returns the binary's instance, starting it on first use. It skips
// the test (locally) or fails it (CI=true) when a tool is missing or the
// service does not start.
func (s *SharedService[T]) Get(t testing.TB) T {
	t.Helper()
	RequireTools(t, s.Tools...)
	s.once.Do(func() {
		dir, err := os.MkdirTemp("", s.Prefix)
		if err != nil {
			s.err = err
			return
		}
		s.dir = dir
		ReapWhenGone(dir)
		ctx, cancel := context.WithTimeout(context.Background(), s.Timeout)
		defer cancel()
		s.v, s.err = s.Start(ctx, dir)
		s.started = s.err == nil
	})
	if s.err != nil {
		if InCI() {
			t.Fatalf("%s did not start: %v", s.Name, s.err)
		}
		t.Skipf("%s did not start: %v", s.Name, s.err)
	}
	return s.v
}

// Stop stops the instance (if one was started) and removes its directory.
func (s *SharedService[T]) Stop() {
	if s.started {
		s.v.Stop()
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

// Main runs the tests of a binary and then stops the instance:
// func TestMain(m *testing.M) { os.Exit(pkg.Main(m)) }.
func (s *SharedService[T]) Main(m *testing.M) int {
	code := m.Run()
	s.Stop()
	return code
}

// ReapWhenGone removes dir once this process has exited, for test binaries
// whose TestMain does not stop their services.
func ReapWhenGone(dir string) {
	cmd := exec.Command("sh", "-c", `while kill -0 "$1" 2>/dev/null; do sleep 1; done; rm -rf "$2"`, "cairn-test-reaper", strconv.Itoa(os.Getpid()), dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if cmd.Start() == nil {
		go func() { _ = cmd.Wait() }()
	}
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listened on a
// moment ago (a service started on it may still lose a race: retry).
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return strconv.Atoi(p)
}

// RandHex returns n random bytes as hex, for names no other test uses.
func RandHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}
