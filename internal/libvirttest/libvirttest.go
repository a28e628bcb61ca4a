// Package libvirttest starts a private libvirt daemon for a test and stops
// it afterwards, so that tests define and boot real libvirt domains
// without systemd and without touching a libvirtd the machine may run.
//
// What works as root on Debian 12 (libvirt 9.0, the monolithic libvirtd;
// Debian 12 has no modular virtqemud), found out on the CI machine:
//
//   - `libvirtd -f CONF -p PIDFILE` with unix_sock_dir in CONF puts the
//     client sockets in a private directory: the connection URI is
//     qemu:///system?socket=DIR/libvirt-sock. No systemd, D-Bus, dnsmasq
//     or udev is needed (libvirtd logs that they are missing and goes on).
//   - The QEMU driver of a root daemon keeps its state in fixed places
//     (/run/libvirt/qemu, /var/lib/libvirt/qemu, domain definitions in
//     /etc/libvirt/qemu): only one daemon at a time can run it, so Start
//     skips (fails under CI) when another libvirtd holds it, and tests
//     give their domains unique names (Name) and undefine them.
//   - Starting a domain needs virtlogd, whose socket is fixed
//     (/run/libvirt/virtlogd-sock): Start runs one when none answers
//     there, and stops it afterwards.
//   - qemu runs as the libvirt-qemu user (dynamic ownership chowns the
//     disk images, not their directories): every directory on the way to
//     a disk must be searchable by others (Reachable makes test
//     directories so).
package libvirttest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// Tools are the programs Start needs.
var Tools = []string{"libvirtd", "virtlogd", "virsh"}

// Daemon is a running private libvirtd.
type Daemon struct {
	// URI connects to it.
	URI string
	Dir string
}

const virtlogdSock = "/run/libvirt/virtlogd-sock"

// Start starts libvirtd (and virtlogd when none runs) for the test; both
// stop when the test ends.
func Start(t testing.TB) *Daemon {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireTools(t, Tools...)
	dir, err := os.MkdirTemp("", "cairn-libvirt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if c, err := net.Dial("unix", virtlogdSock); err == nil {
		c.Close()
	} else {
		conf := filepath.Join(dir, "virtlogd.conf")
		os.WriteFile(conf, []byte(fmt.Sprintf("log_outputs = \"3:file:%s/virtlogd.log\"\n", dir)), 0o600)
		stop, _ := startProc(t, "virtlogd", "-f", conf, "-p", filepath.Join(dir, "virtlogd.pid"))
		t.Cleanup(stop)
		dial := func() error {
			c, err := net.Dial("unix", virtlogdSock)
			if err == nil {
				c.Close()
			}
			return err
		}
		if err := waitFor(30*time.Second, dial); err != nil {
			t.Fatalf("virtlogd did not come up: %v", err)
		}
	}
	conf := filepath.Join(dir, "libvirtd.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("unix_sock_dir = %q\nlisten_tls = 0\nlisten_tcp = 0\nauth_unix_rw = \"none\"\nlog_outputs = \"3:file:%s/libvirtd.log\"\n", dir, dir)), 0o600)
	stop, exited := startProc(t, "libvirtd", "-f", conf, "-p", filepath.Join(dir, "libvirtd.pid"))
	t.Cleanup(stop)
	d := &Daemon{URI: "qemu:///system?socket=" + filepath.Join(dir, "libvirt-sock"), Dir: dir}
	err = waitFor(60*time.Second, func() error {
		select {
		case <-exited:
			return errGone
		default:
		}
		out, err := exec.Command("virsh", "-c", d.URI, "version").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "libvirtd.log"))
		testutil.Missing(t, fmt.Sprintf("a private libvirtd (another one holds the QEMU driver?): %v\n%s", err, log))
	}
	return d
}

// Name is a domain name no other test run uses.
func Name(prefix string) string { return prefix + "-" + testutil.RandHex(4) }

// Remove destroys and undefines a domain (with its NVRAM), when the test
// ends; errors are ignored (the domain may not exist).
func (d *Daemon) Remove(t testing.TB, name string) {
	t.Cleanup(func() {
		exec.Command("virsh", "-c", d.URI, "destroy", name).Run()
		exec.Command("virsh", "-c", d.URI, "undefine", "--nvram", name).Run()
	})
}

// Reachable makes dir and every parent searchable by others (o+x added
// where missing), for libvirt's qemu user.
func Reachable(t testing.TB, dir string) {
	for d := dir; d != filepath.Dir(d); d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o001 != 0 {
			continue
		}
		if err := os.Chmod(d, fi.Mode().Perm()|0o711); err != nil {
			t.Fatal(err)
		}
	}
}

// WaitSerial waits until file holds want (a guest's serial console
// written by libvirt), or ctx ends; it returns what the file holds.
func WaitSerial(ctx context.Context, file, want string) (string, error) {
	for {
		b, _ := os.ReadFile(file)
		if strings.Contains(string(b), want) {
			return string(b), nil
		}
		select {
		case <-ctx.Done():
			return string(b), fmt.Errorf("%q not seen in %s: %w", want, file, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

var errGone = errors.New("libvirtd exited")

// startProc starts a daemon in the foreground; stop ends it, exited is
// closed when it has ended.
func startProc(t testing.TB, name string, args ...string) (stop func(), exited <-chan struct{}) {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	return func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}, done
}

func waitFor(d time.Duration, f func() error) error {
	end := time.Now().Add(d)
	for {
		err := f()
		if err == nil || err == errGone || time.Now().After(end) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}
