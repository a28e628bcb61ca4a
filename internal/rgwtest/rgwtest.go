// Package rgwtest starts a real Ceph RGW (S3 object store) for tests, as
// plain processes under one temporary directory: one monitor, one OSD on
// memstore and radosgw on 127.0.0.1. Nothing is written to /etc/ceph or
// /var/lib/ceph: every daemon and tool gets -c DIR/ceph.conf, and the
// keyring holds every daemon's key, so no `ceph auth` calls are needed.
//
// Vocabulary: a Cluster is one running instance; Shared gives every test
// of a test binary the same Cluster (started once, on first use); Main
// stops it when the binary's tests end. Tests isolate themselves with a
// bucket of their own (NewBucket).
//
// Locally a missing Ceph skips the test; under CI=true a failure to start
// is a test failure.
package rgwtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"

	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// Tools are the commands a Cluster needs (Debian: ceph-mon ceph-osd radosgw ceph-common).
var Tools = []string{"ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph-authtool", "ceph"}

// Cluster is one running Ceph instance with an S3 user.
type Cluster struct {
	Dir       string // everything lives here
	Endpoint  string // http://127.0.0.1:PORT
	AccessKey string
	SecretKey string

	conf    string
	rgwPort int

	mu    sync.Mutex
	procs map[string]*exec.Cmd
}

// Start bootstraps a new cluster under dir (created if needed). ctx bounds
// the start; the daemons outlive it until Stop.
func Start(ctx context.Context, dir string) (*Cluster, error) {
	for _, t := range Tools {
		if _, err := exec.LookPath(t); err != nil {
			return nil, fmt.Errorf("rgwtest: %s not found (apt-get install ceph-mon ceph-osd radosgw ceph-common): %w", t, err)
		}
	}
	c := &Cluster{Dir: dir, conf: filepath.Join(dir, "ceph.conf"), procs: map[string]*exec.Cmd{},
		AccessKey: "CAIRNTEST" + strings.ToUpper(testutil.RandHex(6)), SecretKey: testutil.RandHex(20)}
	if err := c.start(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context) error {
	for _, d := range []string{"mon", "osd", "rgw", "run", "log"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o755); err != nil {
			return err
		}
	}
	monPort, err := testutil.FreePort()
	if err != nil {
		return err
	}
	if c.rgwPort, err = testutil.FreePort(); err != nil {
		return err
	}
	c.Endpoint = fmt.Sprintf("http://127.0.0.1:%d", c.rgwPort)
	fsid, osdUUID := uuid(), uuid()
	conf := fmt.Sprintf(`[global]
fsid = %[1]s
mon host = [v2:127.0.0.1:%[2]d]
mon initial members = a
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = %[3]s/keyring
log file = %[3]s/log/$name.log
run dir = %[3]s/run
admin socket = %[3]s/run/$name.asok
pid file = %[3]s/run/$name.pid
ms bind ipv6 = false
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd pool default pg num = 8
osd pool default pgp num = 8
mon max pg per osd = 1000
osd crush chooseleaf type = 0
mon data avail crit = 1
mon data avail warn = 1
paxos propose interval = 0.05
# a killed radosgw leaves watches on its control objects; a new one
# notifies them on every bucket creation and waits for them to expire
osd client watch timeout = 3
osd objectstore = memstore
memstore device bytes = 8589934592
osd data = %[3]s/osd
mon data = %[3]s/mon
debug ms = 0
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:%[4]d tcp_nodelay=1
rgw data = %[3]s/rgw
rgw dns name = 127.0.0.1
`, fsid, monPort, c.Dir, c.rgwPort)
	if err := os.WriteFile(c.conf, []byte(conf), 0o644); err != nil {
		return err
	}
	kr := filepath.Join(c.Dir, "keyring")
	keys := []struct {
		name string
		caps []string
	}{
		{"mon.", []string{"mon", "allow *"}},
		{"client.admin", []string{"mon", "allow *", "osd", "allow *", "mgr", "allow *"}},
		{"osd.0", []string{"mon", "allow profile osd", "osd", "allow *", "mgr", "allow profile osd"}},
		{"client.rgw", []string{"mon", "allow rw", "osd", "allow rwx", "mgr", "allow rw"}},
	}
	for i, k := range keys {
		args := []string{kr}
		if i == 0 {
			args = append(args, "--create-keyring")
		}
		args = append(args, "--gen-key", "-n", k.name)
		for j := 0; j < len(k.caps); j += 2 {
			args = append(args, "--cap", k.caps[j], k.caps[j+1])
		}
		if err := c.run(ctx, "ceph-authtool", args...); err != nil {
			return err
		}
	}
	monmap := filepath.Join(c.Dir, "monmap")
	if err := c.run(ctx, "monmaptool", "--create", "--fsid", fsid, "--addv", "a", fmt.Sprintf("[v2:127.0.0.1:%d]", monPort), monmap); err != nil {
		return err
	}
	if err := c.run(ctx, "ceph-mon", "-c", c.conf, "--mkfs", "-i", "a", "--monmap", monmap, "--keyring", kr); err != nil {
		return err
	}
	if err := c.spawn("mon", "ceph-mon", "-c", c.conf, "-f", "-i", "a"); err != nil {
		return err
	}
	if err := c.run(ctx, "ceph-osd", "-c", c.conf, "-i", "0", "--mkfs", "--osd-uuid", osdUUID, "--no-mon-config"); err != nil {
		return err
	}
	// The monitor can take longer than one client's connect timeout to
	// form its quorum on a loaded machine (CI runs packages in parallel
	// on 2 CPUs); osd create with the same uuid is idempotent, so ask
	// again until the caller's deadline.
	for {
		err := c.run(ctx, "ceph", "-c", c.conf, "--connect-timeout", "60", "osd", "create", osdUUID, "0")
		if err == nil {
			break
		}
		if !c.alive("mon") || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
	}
	if err := c.spawn("osd", "ceph-osd", "-c", c.conf, "-f", "-i", "0"); err != nil {
		return err
	}
	if err := c.run(ctx, "radosgw-admin", "-c", c.conf, "user", "create", "--uid", "cairn", "--display-name", "cairn tests",
		"--access-key", c.AccessKey, "--secret-key", c.SecretKey); err != nil {
		return err
	}
	return c.StartRGW(ctx)
}

// StartRGW starts radosgw (again, after KillRGW) and waits until it answers.
func (c *Cluster) StartRGW(ctx context.Context) error {
	if err := c.spawn("rgw", "radosgw", "-c", c.conf, "-f", "-n", "client.rgw"); err != nil {
		return err
	}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.Endpoint, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if !c.alive("rgw") {
			return fmt.Errorf("rgwtest: radosgw exited at start (see %s)", filepath.Join(c.Dir, "log"))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("rgwtest: radosgw did not answer on %s: %w", c.Endpoint, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// KillRGW kills radosgw with SIGKILL (the object store goes away mid-request).
func (c *Cluster) KillRGW() { c.kill("rgw") }

// Stop kills every daemon (SIGKILL: memstore OSDs ignore SIGTERM for
// seconds) and removes nothing: the caller owns Dir.
func (c *Cluster) Stop() {
	for _, n := range []string{"rgw", "osd", "mon"} {
		c.kill(n)
	}
}

func (c *Cluster) kill(name string) {
	c.mu.Lock()
	cmd := c.procs[name]
	delete(c.procs, name)
	c.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}
}

func (c *Cluster) alive(name string) bool {
	c.mu.Lock()
	cmd := c.procs[name]
	c.mu.Unlock()
	return cmd != nil && cmd.Process != nil && cmd.Process.Signal(syscall.Signal(0)) == nil && cmd.ProcessState == nil
}

func (c *Cluster) spawn(name, prog string, args ...string) error {
	f, err := os.OpenFile(filepath.Join(c.Dir, "log", name+".out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(prog, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// The daemons die with the test binary even when it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("rgwtest: start %s: %w", prog, err)
	}
	f.Close()
	c.mu.Lock()
	c.procs[name] = cmd
	c.mu.Unlock()
	return nil
}

func (c *Cluster) run(ctx context.Context, prog string, args ...string) error {
	cmd := exec.CommandContext(ctx, prog, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("rgwtest: %s %s: %w: %s", prog, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

var shared = testutil.SharedService[*Cluster]{
	Name:    "Ceph RGW",
	Prefix:  "cairn-rgw-",
	Timeout: 3 * time.Minute,
	Tools:   Tools,
	Start:   Start,
}

// Shared returns the test binary's cluster, starting it on first use. It
// skips the test (locally) or fails it (CI=true) when Ceph is missing
// or does not start.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	return shared.Get(t)
}

// StopShared stops the shared cluster (if started) and removes its
// directory; Main calls it (and internal/s3test.Main, for binaries that
// test against several engines).
func StopShared() { shared.Stop() }

// Main runs the tests of a binary and then stops the shared cluster:
// func TestMain(m *testing.M) { os.Exit(rgwtest.Main(m)) }.
func Main(m *testing.M) int { return shared.Main(m) }

// NewBucketName returns a bucket name no other test uses.
func NewBucketName() string { return "cairn-" + testutil.RandHex(8) }

// Admin runs radosgw-admin against the cluster (for tests that need to
// look past the S3 API).
func (c *Cluster) Admin(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "radosgw-admin", append([]string{"-c", c.conf}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("radosgw-admin %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

func uuid() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
