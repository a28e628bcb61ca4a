package backupd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd/vsphere"
)

// The NBD command placeholders come from plain data, without a job.
func TestNBDPlaceholders(t *testing.T) {
	tmp := t.TempDir()
	p := nbdPlaceholders{
		Credentials: vsphere.Credentials{User: "backup", Password: "s3cret"},
		VMRef:       "vm-42", VMName: "web 1/a", SnapshotRef: "snapshot-7",
		Disk:   vsphere.Disk{Name: "scsi0-0", FileName: "[ds1] web/web.vmdk"},
		Socket: "/run/x/nbd.sock", Tmp: tmp,
		LocalPath: func(_ context.Context, f string) (string, error) { return "/mnt/" + f, nil },
	}
	ctx := context.Background()
	for _, tc := range []struct{ name, want string }{
		{"socket", "/run/x/nbd.sock"},
		{"user", "backup"},
		{"password_file", filepath.Join(tmp, "password")},
		{"vm_moref", "vm-42"},
		{"snapshot_moref", "snapshot-7"},
		{"disk_file", "[ds1] web/web.vmdk"},
		{"disk_local_path", "/mnt/[ds1] web/web.vmdk"},
		{"vm", "web%201%2Fa"},
		{"disk", "scsi0-0"},
	} {
		got, err := p.value(ctx, tc.name)
		if err != nil || got != tc.want {
			t.Errorf("{%s} = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	b, err := os.ReadFile(filepath.Join(tmp, "password"))
	if err != nil || string(b) != "s3cret" {
		t.Fatalf("password file = %q, %v", b, err)
	}
	if fi, _ := os.Stat(filepath.Join(tmp, "password")); fi.Mode().Perm() != 0o600 {
		t.Errorf("password file mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := p.value(ctx, "nope"); err == nil {
		t.Error("an unknown placeholder was accepted")
	}
	p.SnapshotRef = ""
	if _, err := p.value(ctx, "snapshot_moref"); err == nil || !strings.Contains(err.Error(), "remove {snapshot_moref}") {
		t.Errorf("{snapshot_moref} without a snapshot: %v", err)
	}
	args, err := p.expand(ctx, "nbdkit -U {socket} vddk file={disk_file}")
	if err != nil || strings.Join(args, "|") != "nbdkit|-U|/run/x/nbd.sock|vddk|file=[ds1] web/web.vmdk" {
		t.Errorf("expand = %q, %v", args, err)
	}
}
