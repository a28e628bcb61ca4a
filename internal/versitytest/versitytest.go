package versitytest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// Version is the versitygw release scripts/install-deps.sh installs.
const Version = "v1.8.0"

// Tools are the commands a Gateway needs.
var Tools = []string{"versitygw"}

// Gateway is one running versitygw with its root credentials.
type Gateway struct {
	Dir       string // everything lives here
	Endpoint  string // http://127.0.0.1:PORT
	AccessKey string
	SecretKey string

	port int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start starts a new gateway under dir (created if needed) and waits until
// it answers a signed request. ctx bounds the start; the process outlives
// it until Stop.
func Start(ctx context.Context, dir string) (*Gateway, error) {
	if _, err := exec.LookPath("versitygw"); err != nil {
		return nil, fmt.Errorf("versitytest: versitygw not found (scripts/install-deps.sh: go install github.com/versity/versitygw/cmd/versitygw@%s): %w", Version, err)
	}
	g := &Gateway{Dir: dir, AccessKey: "CAIRNVGW" + strings.ToUpper(testutil.RandHex(6)), SecretKey: testutil.RandHex(20)}
	for _, d := range []string{"data", "versions", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	// A free port can be taken between the probe and versitygw's bind:
	// then the gateway exits at once and another port is tried.
	var err error
	for range 3 {
		if g.port, err = testutil.FreePort(); err != nil {
			return nil, err
		}
		g.Endpoint = fmt.Sprintf("http://127.0.0.1:%d", g.port)
		if err = g.Restart(ctx); err == nil || !errors.Is(err, errExited) {
			break
		}
	}
	if err != nil {
		g.Stop()
		return nil, err
	}
	return g, nil
}

var errExited = errors.New("versitygw exited at start")

// Restart starts the gateway process (again, after Kill) on the same port
// and directory and waits until it answers a signed request.
func (g *Gateway) Restart(ctx context.Context) error {
	f, err := os.OpenFile(filepath.Join(g.Dir, "log", "versitygw.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command("versitygw", "--port", fmt.Sprintf("127.0.0.1:%d", g.port), "--quiet",
		"posix", "--versioning-dir", filepath.Join(g.Dir, "versions"), filepath.Join(g.Dir, "data"))
	// The root credentials go through the environment, not argv (ps).
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+g.AccessKey, "ROOT_SECRET_ACCESS_KEY="+g.SecretKey)
	cmd.Stdout, cmd.Stderr = f, f
	// The gateway dies with the test binary even when that is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("versitytest: start versitygw: %w", err)
	}
	f.Close()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	g.mu.Lock()
	g.cmd, g.done = cmd, done
	g.mu.Unlock()

	cl, err := minio.New(strings.TrimPrefix(g.Endpoint, "http://"), &minio.Options{Creds: credentials.NewStaticV4(g.AccessKey, g.SecretKey, "")})
	if err != nil {
		g.Kill()
		return err
	}
	for {
		// A signed request: the gateway answers it only once it has
		// loaded its credentials and its backend.
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := cl.ListBuckets(rctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			out, _ := os.ReadFile(filepath.Join(g.Dir, "log", "versitygw.out"))
			return fmt.Errorf("versitytest: %w (%s): %s", errExited, g.Endpoint, strings.TrimSpace(lastLines(string(out), 5)))
		case <-ctx.Done():
			g.Kill()
			return fmt.Errorf("versitytest: versitygw did not answer on %s: %w (last: %v)", g.Endpoint, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Kill kills the gateway with SIGKILL (the object store goes away
// mid-request) and waits for it to exit.
func (g *Gateway) Kill() {
	g.mu.Lock()
	cmd, done := g.cmd, g.done
	g.cmd, g.done = nil, nil
	g.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

// Stop kills the gateway and removes nothing: the caller owns Dir.
func (g *Gateway) Stop() { g.Kill() }

var shared = testutil.SharedService[*Gateway]{
	Name:    "versitygw",
	Prefix:  "cairn-vgw-",
	Timeout: time.Minute,
	Tools:   Tools,
	Start:   Start,
}

// Shared returns the test binary's gateway, starting it on first use. It
// skips the test (locally) or fails it (CI=true) when versitygw is missing
// or does not start.
func Shared(t testing.TB) *Gateway {
	t.Helper()
	return shared.Get(t)
}

// StopShared stops the shared gateway (if started) and removes its
// directory; Main calls it (and internal/s3test.Main, for binaries that
// test against several engines).
func StopShared() { shared.Stop() }

// Main runs the tests of a binary and then stops the shared gateway:
// func TestMain(m *testing.M) { os.Exit(versitytest.Main(m)) }.
func Main(m *testing.M) int { return shared.Main(m) }

// NewBucketName returns a bucket name no other test uses.
func NewBucketName() string { return "cairn-" + testutil.RandHex(8) }

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Pid is the gateway process's id (0 when it is not running).
func (g *Gateway) Pid() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cmd == nil || g.cmd.Process == nil {
		return 0
	}
	return g.cmd.Process.Pid
}
