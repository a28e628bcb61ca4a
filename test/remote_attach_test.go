package test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/cairnbackup/cairn/backupd/vmconfig"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestRemoteAttachments: a point imported with --vm-config is replicated;
// `cairn mount --remote` shows its vm/config.json with the point's bytes;
// a fresh repository pulls it with the same attachments (names, sizes,
// hashes), and its own mount shows the same vm/config.json.
func TestRemoteAttachments(t *testing.T) {
	testutil.RequireFUSE(t)
	f := newRemoteFixture(t)
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repo, "init")
	src := filepath.Join(dir, "d.img")
	makeImage(t, src, 4<<20)
	writeRandom(t, src, 0, 1<<20, 7)
	cfg := filepath.Join(dir, "vm.json")
	doc := `{"version":1,"name":"att","firmware":"bios","cpus":2,"memory_mb":1024,
	"controllers":[{"key":1000,"type":"pvscsi","bus":0}],
	"disks":[{"name":"scsi0-0","key":2000,"controller_key":1000,"bus":0,"unit":0,"capacity":4194304,"provisioning":"thin"}],"nics":[]}`
	if err := os.WriteFile(cfg, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCairn(t, "--repo", repo, "import", "--vm", "att", "--disk", "scsi0-0", "--vm-config", cfg, src)
	pts := listPoints(t, repo, "att")
	if len(pts) != 1 {
		t.Fatalf("points %v", pts)
	}
	info, ok := pts[0].Attachment(vmconfig.AttachmentConfig)
	if !ok {
		t.Fatalf("no %s in %+v", vmconfig.AttachmentConfig, pts[0].Attachments)
	}
	f.add(t, repo, "off")
	mustCairn(t, "--repo", repo, "remote", "init", "off")
	mustCairn(t, "--repo", repo, "replicate", "--remote", "off")
	if rp := remotePoints(t, repo, "off"); len(rp) != 1 || !reflect.DeepEqual(rp[0].Attachments, pts[0].Attachments) {
		t.Fatalf("remote point's attachments %+v, want %+v", rp, pts[0].Attachments)
	}

	readSHA := func(path string) string {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		return hex.EncodeToString(sum[:])
	}
	mnt := t.TempDir()
	cmd := mountStartCLI(t, buildCairn(t), repo, mnt, "--remote", "off")
	cfgData, err := os.ReadFile(filepath.Join(mnt, "att", pts[0].ID, "vm", "config.json"))
	if err != nil {
		t.Fatalf("%v; the mount said: %s", err, cmd.Stderr.(*bytes.Buffer).String())
	}
	sum := sha256.Sum256(cfgData)
	got := hex.EncodeToString(sum[:])
	mustCairn(t, "umount", mnt)
	mountWaitExit(t, cmd)
	if got != info.SHA256 {
		t.Fatalf("vm/config.json through mount --remote: sha256 %s, the point's %s", got, info.SHA256)
	}

	repo2 := filepath.Join(dir, "repo2")
	mustCairn(t, "--repo", repo2, "init")
	f.add(t, repo2, "off")
	mustCairn(t, "--repo", repo2, "pull", "--remote", "off")
	pulled := listPoints(t, repo2, "att")
	if len(pulled) != 1 || !reflect.DeepEqual(pulled[0].Attachments, pts[0].Attachments) {
		t.Fatalf("pulled point's attachments %+v, want %+v", pulled, pts[0].Attachments)
	}
	mnt2 := t.TempDir()
	cmd = mountStartCLI(t, buildCairn(t), repo2, mnt2)
	got = readSHA(filepath.Join(mnt2, "att", pulled[0].ID, "vm", "config.json"))
	mustCairn(t, "umount", mnt2)
	mountWaitExit(t, cmd)
	if got != info.SHA256 {
		t.Fatalf("pulled vm/config.json: sha256 %s, the point's %s", got, info.SHA256)
	}
}
