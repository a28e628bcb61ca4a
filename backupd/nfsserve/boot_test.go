package nfsserve

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/internal/guestimg"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestQemuBootsThePointFromTheNFSExport boots internal/guestimg's BIOS
// guest with qemu reading and writing its disk through qemu's libnfs
// driver straight from the export (no copy, no local image).
func TestQemuBootsThePointFromTheNFSExport(t *testing.T) {
	testutil.RequireTools(t, append([]string{"qemu-system-x86_64"}, guestimg.Tools...)...)
	img, err := guestimg.Build(guestimg.Spec{Kind: guestimg.KindBIOS, Marker: "nfsboot"})
	if err != nil {
		t.Fatalf("build the guest: %v", err)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	repo, p := point(t, map[string][]byte{"disk0": b}, "disk0")
	before := diskHash(t, repo, p, "disk0")
	e := openExport(t, repo, p, t.TempDir())
	pt, stop := serveExport(t, e)
	portmapper(t, pt)

	serial := filepath.Join(t.TempDir(), "serial.log")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", "-m", "256", "-display", "none", "-no-reboot",
		"-serial", "file:"+serial, "-drive", "file=nfs://127.0.0.1/cairn/disk0-flat.vmdk,format=raw,if=ide")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	want := guestimg.MarkerPrefix + " nfsboot"
	booted := false
	for !booted {
		select {
		case err := <-exited:
			out, _ := os.ReadFile(serial)
			t.Fatalf("qemu ended before the guest came up: %v\n%s\nserial:\n%s", err, stderr.String(), out)
		case <-ctx.Done():
			out, _ := os.ReadFile(serial)
			t.Fatalf("no marker %q on the serial console within 10 min:\n%s", want, out)
		case <-time.After(200 * time.Millisecond):
			out, _ := os.ReadFile(serial)
			booted = strings.Contains(string(out), want)
		}
	}
	cmd.Process.Kill()
	<-exited
	stop()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if got := diskHash(t, repo, p, "disk0"); got != before {
		t.Errorf("the point changed under the booted guest")
	}
}
