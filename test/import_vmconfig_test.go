package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd/vmconfig"
)

// TestImportVMConfig: `cairn import --vm-config` attaches a validated
// configuration to the point (points --json lists it); a bad file fails
// with the field named and leaves no point behind.
func TestImportVMConfig(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repo, "init")
	src := filepath.Join(dir, "d.img")
	makeImage(t, src, 4<<20)
	writeRandom(t, src, 0, 1<<20, 1)
	good := `{"version":1,"name":"imp","firmware":"bios","cpus":1,"memory_mb":512,
	"controllers":[{"key":1000,"type":"pvscsi","bus":0}],
	"disks":[{"name":"scsi0-0","key":2000,"controller_key":1000,"bus":0,"unit":0,"capacity":4194304,"provisioning":"thin"}],"nics":[]}`
	for _, tc := range []struct{ name, doc, want string }{
		{"bad firmware", strings.Replace(good, `"bios"`, `"uefi"`, 1), `"firmware"`},
		{"bad json", `{"version":1,`, "not JSON"},
		{"wrong type", strings.Replace(good, `"cpus":1`, `"cpus":"one"`, 1), `"cpus"`},
		{"unknown disk", strings.Replace(good, `"scsi0-0"`, `"scsi0-9"`, 1), `"disks[0].name"`},
	} {
		f := filepath.Join(dir, "bad.json")
		if err := os.WriteFile(f, []byte(tc.doc), 0o644); err != nil {
			t.Fatal(err)
		}
		res := runCairn(t, nil, "--repo", repo, "import", "--vm", "imp", "--disk", "scsi0-0", "--vm-config", f, src)
		if res.code == 0 || !strings.Contains(res.stderr, tc.want) || !strings.Contains(res.stderr, "bad.json") {
			t.Errorf("%s: exit %d, stderr %q (want it to name %s)", tc.name, res.code, res.stderr, tc.want)
		}
	}
	if pts := listPoints(t, repo, "imp"); len(pts) != 0 {
		t.Fatalf("failed imports left points: %v", pts)
	}
	f := filepath.Join(dir, "good.json")
	if err := os.WriteFile(f, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCairn(t, "--repo", repo, "import", "--vm", "imp", "--disk", "scsi0-0", "--vm-config", f, src)
	pts := listPoints(t, repo, "imp")
	if len(pts) != 1 {
		t.Fatalf("points %v", pts)
	}
	if a, ok := pts[0].Attachment(vmconfig.AttachmentConfig); !ok || a.Size == 0 {
		t.Fatalf("points --json: no %s in %+v", vmconfig.AttachmentConfig, pts[0].Attachments)
	}
}
