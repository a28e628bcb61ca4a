package test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/fusefs"
	"github.com/cairnbackup/cairn/internal/testutil"
)

const mib = 1 << 20

// guestPart is one partition of the guest test disk.
type guestPart struct {
	name    string // test case name
	sizeMiB int64
	build   func(t testing.TB, img, src string) // makes the filesystem image from src
	spec    treeSpec
	cmp     compareOpts
	skip    func(rel string) bool // paths the filesystem keeps for itself
}

func buildExt4(t testing.TB, img, src string) {
	sh(t, "mkfs.ext4", "-q", "-F", "-L", "guest-ext4", "-d", src, img, fmt.Sprintf("%dM", 700))
}

func buildXFS(t testing.TB, img, src string) {
	makeImage(t, img, 700*mib)
	sh(t, "mkfs.xfs", "-q", "-f", "-L", "guestxfs", img)
	mnt := t.TempDir()
	sh(t, "mount", "-o", "loop", img, mnt)
	defer exec.Command("umount", mnt).Run()
	sh(t, "cp", "-a", src+"/.", mnt+"/")
	sh(t, "umount", mnt)
}

func buildFAT(t testing.TB, img, src string) {
	makeImage(t, img, 128*mib)
	sh(t, "mkfs.vfat", "-F", "32", "-n", "GUESTFAT", img)
	entries, _ := os.ReadDir(src)
	args := []string{"-s", "-m", "-i", img}
	for _, e := range entries {
		args = append(args, filepath.Join(src, e.Name()))
	}
	sh(t, "mcopy", append(args, "::/")...)
}

func buildNTFS(t testing.TB, img, src string) { buildNTFSSized(t, img, src, 256*mib) }

func buildNTFSSized(t testing.TB, img, src string, size int64) {
	makeImage(t, img, size)
	sh(t, "mkntfs", "-q", "-Q", "-F", "-L", "guestntfs", img)
	mnt := t.TempDir()
	sh(t, "ntfs-3g", img, mnt)
	defer exec.Command("umount", mnt).Run()
	sh(t, "cp", "-r", "--preserve=timestamps", src+"/.", mnt+"/")
	sh(t, "umount", mnt)
}

// writeAt copies the file src into dst at off (sparse-aware through dd).
func writeAt(t testing.TB, dst, src string, off int64) {
	sh(t, "dd", "if="+src, "of="+dst, "bs=1M", fmt.Sprintf("seek=%d", off/mib), "conv=notrunc,sparse", "status=none")
}

// TestGuestFilesystems builds a GPT disk with ext4, XFS, FAT32 and NTFS
// partitions (filled by the real tools), an LVM physical volume and an ext4
// partition with a corrupt superblock; imports it; mounts the repository
// with the guest filesystem view; and compares every file with its source.
// A second point, after the ext4 source changed, shows the new files while
// the first still shows the old ones.
func TestGuestFilesystems(t *testing.T) {
	testutil.RequireFUSE(t)
	testutil.RequireTools(t, "mkfs.ext4", "mkfs.xfs", "mkfs.vfat", "mcopy", "mkntfs", "ntfs-3g", "sgdisk", "pvcreate", "losetup")
	dir := t.TempDir()
	noLost := func(rel string) bool { return rel == "lost+found" }
	ntfsSkip := func(rel string) bool { return strings.HasPrefix(rel, "$") || rel == "System Volume Information" }
	parts := []guestPart{
		{name: "ext4", sizeMiB: 700, build: buildExt4, skip: noLost,
			spec: treeSpec{files: 2000, bigDir: 10000, depth: 30, bigFile: 256 * mib, links: true, modes: true, longNames: true, sparse: true},
			cmp:  compareOpts{modes: true, links: true, mtimeGran: time.Second}}, // mkfs.ext4 -d copies whole seconds
		{name: "xfs", sizeMiB: 700, build: buildXFS,
			spec: treeSpec{files: 2000, bigDir: 10000, depth: 30, bigFile: 256 * mib, links: true, modes: true, longNames: true, sparse: true},
			cmp:  compareOpts{modes: true, links: true}},
		{name: "fat32", sizeMiB: 128, build: buildFAT,
			// mcopy is quadratic in a directory's size: 400 entries, not 10,000.
			spec: treeSpec{files: 1000, bigDir: 400, depth: 10, bigFile: 16 * mib, longNames: true, bmpOnly: true},
			cmp:  compareOpts{mtimeGran: 2 * time.Second}},
		{name: "ntfs", sizeMiB: 256, build: buildNTFS, skip: ntfsSkip,
			spec: treeSpec{files: 1000, bigDir: 2000, depth: 20, bigFile: 32 * mib, longNames: true},
			cmp:  compareOpts{mtimeGran: time.Microsecond}},
	}
	disk := filepath.Join(dir, "disk.img")
	starts := map[string]int64{}
	off := int64(1 * mib)
	var sgArgs []string
	for i, p := range parts {
		starts[p.name] = off
		sgArgs = append(sgArgs, "-n", fmt.Sprintf("%d:%d:%d", i+1, off/512, (off+p.sizeMiB*mib)/512-1))
		off += p.sizeMiB * mib
	}
	lvmStart, badStart := off, off+16*mib
	sgArgs = append(sgArgs, "-n", fmt.Sprintf("5:%d:%d", lvmStart/512, (lvmStart+16*mib)/512-1), "-t", "5:8e00",
		"-n", fmt.Sprintf("6:%d:%d", badStart/512, (badStart+16*mib)/512-1))
	makeImage(t, disk, badStart+16*mib+mib)
	sh(t, "sgdisk", append(sgArgs, disk)...)

	sources := map[string]string{}
	for _, p := range parts {
		start := time.Now()
		src := filepath.Join(dir, "src-"+p.name)
		makeGuestTree(t, src, p.spec, 1)
		sources[p.name] = src
		img := filepath.Join(dir, p.name+".fs")
		mid := time.Now()
		p.build(t, img, src)
		writeAt(t, disk, img, starts[p.name])
		os.Remove(img)
		t.Logf("%s fixture: tree %v, filesystem %v", p.name, mid.Sub(start).Round(time.Millisecond), time.Since(mid).Round(time.Millisecond))
	}
	// An LVM2 physical volume (made by pvcreate on a loop device).
	lvm := filepath.Join(dir, "lvm.fs")
	makeImage(t, lvm, 16*mib)
	loop, err := exec.Command("losetup", "--find", "--show", lvm).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(loop))
	sh(t, "pvcreate", "-q", "-ff", "-y", dev)
	sh(t, "losetup", "-d", dev)
	writeAt(t, disk, lvm, lvmStart)
	// ext4 whose superblock checksum is wrong.
	bad := filepath.Join(dir, "bad.fs")
	sh(t, "mkfs.ext4", "-q", "-F", bad, "16M")
	f, _ := os.OpenFile(bad, os.O_RDWR, 0)
	f.WriteAt([]byte{0xde, 0xad, 0xbe, 0xef}, 1024+0x3fc)
	f.Close()
	writeAt(t, disk, bad, badStart)

	repoDir := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repoDir, "init")
	start := time.Now()
	p1 := strings.TrimSpace(mustCairn(t, "--repo", repoDir, "import", "--vm", "guest", "--disk", "sda", disk))
	t.Logf("first import %v", time.Since(start).Round(time.Millisecond))

	// Change the ext4 source: modify, add, delete; rebuild that partition.
	src := sources["ext4"]
	os.WriteFile(filepath.Join(src, "etc", "d00", "file-0000.conf"), []byte("changed in point 2\n"), 0o644)
	os.WriteFile(filepath.Join(src, "added-in-point-2.txt"), []byte("new\n"), 0o644)
	os.Remove(filepath.Join(src, "empty"))
	before := walkTree(t, sources["ext4"], nil)
	_ = before
	img := filepath.Join(dir, "ext4-2.fs")
	buildExt4(t, img, src)
	writeAt(t, disk, img, starts["ext4"])
	p2 := strings.TrimSpace(mustCairn(t, "--repo", repoDir, "import", "--vm", "guest", "--disk", "sda", disk))

	mnt := filepath.Join(dir, "mnt")
	mountVolumes(t, repoDir, mnt)
	fsRoot := func(point, part string) string { return filepath.Join(mnt, "guest", point, "fs", "sda", part) }

	entries, err := os.ReadDir(filepath.Join(mnt, "guest", p2, "fs", "sda"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "p1,p2,p3,p4,p5,p6" {
		t.Fatalf("fs/sda lists %v, want p1..p6", names)
	}
	for i, p := range parts {
		t.Run(p.name, func(t *testing.T) {
			defer func(start time.Time) { t.Logf("compare %v", time.Since(start).Round(time.Millisecond)) }(time.Now())
			part := fmt.Sprintf("p%d", i+1)
			want := walkTree(t, sources[p.name], nil)
			got := walkTree(t, fsRoot(p2, part), p.skip)
			compareTrees(t, want, got, p.cmp)
		})
	}
	t.Run("changes over time", func(t *testing.T) {
		old := fsRoot(p1, "p1")
		if b, err := os.ReadFile(filepath.Join(old, "etc", "d00", "file-0000.conf")); err != nil || strings.Contains(string(b), "changed") {
			t.Fatalf("point 1 shows the later content: %q %v", b, err)
		}
		if _, err := os.Stat(filepath.Join(old, "added-in-point-2.txt")); !os.IsNotExist(err) {
			t.Fatalf("point 1 shows a file added later: %v", err)
		}
		if _, err := os.Stat(filepath.Join(old, "empty")); err != nil {
			t.Fatalf("point 1 lost a file deleted later: %v", err)
		}
		if b, _ := os.ReadFile(filepath.Join(fsRoot(p2, "p1"), "etc", "d00", "file-0000.conf")); string(b) != "changed in point 2\n" {
			t.Fatalf("point 2 shows %q", b)
		}
	})
	t.Run("unreadable volumes explain themselves", func(t *testing.T) {
		lvmText, err := os.ReadFile(filepath.Join(fsRoot(p2, "p5"), fusefs.ErrorFileName))
		if err != nil || !strings.Contains(string(lvmText), "LVM") {
			t.Fatalf("LVM partition: ERROR.txt %q, %v", lvmText, err)
		}
		badText, err := os.ReadFile(filepath.Join(fsRoot(p2, "p6"), fusefs.ErrorFileName))
		if err != nil || !strings.Contains(string(badText), "ext4") {
			t.Fatalf("corrupt ext4: ERROR.txt %q, %v", badText, err)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(fsRoot(p2, "p6"), fusefs.ErrorFileName), &st); err != nil || st.Nlink != 1 {
			t.Errorf("ERROR.txt: %v, link count %d, want 1", err, st.Nlink)
		}
		// The rest of the mount still works.
		if _, err := os.ReadFile(filepath.Join(fsRoot(p2, "p1"), "names", "Grüße aus Köln.txt")); err != nil {
			t.Fatalf("mount broken after a bad partition: %v", err)
		}
	})
	t.Run("read-only", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(fsRoot(p2, "p1"), "new"), nil, 0o644); err == nil || !strings.Contains(err.Error(), "read-only") {
			t.Fatalf("create in a guest fs: %v, want EROFS", err)
		}
	})
	t.Run("cli partitions files restore-file", func(t *testing.T) {
		out := mustCairn(t, "--repo", repoDir, "partitions", "--vm", "guest", "--point", p2, "--json")
		var tables []struct {
			Table      string `json:"table"`
			Partitions []struct {
				Name       string `json:"name"`
				Filesystem string `json:"filesystem"`
				Label      string `json:"label"`
				Browsable  bool   `json:"browsable"`
				Used       int64  `json:"used"`
			} `json:"partitions"`
		}
		if err := json.Unmarshal([]byte(out), &tables); err != nil || len(tables) != 1 {
			t.Fatalf("partitions --json: %v\n%s", err, out)
		}
		var got []string
		for _, p := range tables[0].Partitions {
			got = append(got, fmt.Sprintf("%s=%s:%v", p.Name, p.Filesystem, p.Browsable))
		}
		want := "p1=ext4:true p2=xfs:true p3=fat32:true p4=ntfs:true p5=lvm2:false p6=ext4:false"
		if tables[0].Table != "gpt" || strings.Join(got, " ") != want {
			t.Fatalf("partitions: %s %v, want gpt %s", tables[0].Table, got, want)
		}
		if l := tables[0].Partitions[0]; l.Label != "guest-ext4" || l.Used <= 256*mib {
			t.Fatalf("ext4 partition: label %q used %d", l.Label, l.Used)
		}
		ls := mustCairn(t, "--repo", repoDir, "files", "--vm", "guest", "--point", p2, "--disk", "sda", "--part", "1", "/names")
		if !strings.Contains(ls, "Grüße aus Köln.txt") || !strings.Contains(ls, "-rw-r--r--") {
			t.Fatalf("files /names:\n%s", ls)
		}
		dest := filepath.Join(t.TempDir(), "restored")
		mustCairn(t, "--repo", repoDir, "restore-file", "--vm", "guest", "--point", p2, "--disk", "sda", "--part", "p2", "/", dest)
		compareTrees(t, walkTree(t, sources["xfs"], nil), walkTree(t, dest, nil), compareOpts{modes: true, links: true})
		res := runCairn(t, nil, "--repo", repoDir, "files", "--vm", "guest", "--disk", "sda", "--part", "5")
		if res.code == 0 || !strings.Contains(res.stderr, "LVM") {
			t.Fatalf("files on an LVM partition: %d %s", res.code, res.stderr)
		}
	})
	t.Run("sparse file keeps holes", func(t *testing.T) {
		p := filepath.Join(fsRoot(p2, "p1"), "data", "sparse.bin")
		fd, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer fd.Close()
		data, err := seekData(fd, 4096)
		if err != nil || data < 64*mib-4096 {
			t.Fatalf("SEEK_DATA after the first block = %d, %v: holes not reported", data, err)
		}
	})
}

func seekData(f *os.File, off int64) (int64, error) {
	return f.Seek(off, 3) // SEEK_DATA
}

var _ = binary.LittleEndian
