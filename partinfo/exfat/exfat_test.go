package exfat_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/internal/testutil"
	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/exfat"
	"github.com/cairnbackup/cairn/partinfo/fsopen"
	"github.com/cairnbackup/cairn/partinfo/internal/fixture"
)

// build makes an exFAT image with mkfs.exfat and fills it through
// exfat-fuse: the fixture tree, a file written in two interleaved halves
// (a fragmented FAT chain) and a 200-entry directory.
func build(t *testing.T) (img, src string) {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.exfat", "mount.exfat-fuse", "losetup")
	dir := t.TempDir()
	src = filepath.Join(dir, "src")
	fixture.Tree(t, src, fixture.Spec{ManyFiles: 300, BigDir: 200, Depth: 6, BigFile: 5 << 20, Seed: 7})
	img = filepath.Join(dir, "exfat.img")
	fixture.Image(t, img, 64<<20)
	fixture.Run(t, nil, "mkfs.exfat", "-L", "Cairn exFAT", "-c", "4K", img)
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	// exfat-fuse mounts block devices only.
	loop := strings.TrimSpace(fixture.Run(t, nil, "losetup", "--find", "--show", img))
	defer exec.Command("losetup", "-d", loop).Run()
	fixture.Run(t, nil, "mount.exfat-fuse", loop, mnt)
	mounted := true
	defer func() {
		if mounted {
			exec.Command("umount", mnt).Run()
		}
	}()
	fixture.Run(t, nil, "cp", "-r", "--preserve=timestamps", src+"/.", mnt+"/")
	// Two files growing in turns: their clusters interleave.
	a, _ := os.Create(filepath.Join(mnt, "frag-a.bin"))
	b, _ := os.Create(filepath.Join(mnt, "frag-b.bin"))
	var wa, wb []byte
	for i := 0; i < 64; i++ {
		ca := bytes.Repeat([]byte{byte(i)}, 4096)
		cb := bytes.Repeat([]byte{byte(255 - i)}, 4096)
		a.Write(ca)
		b.Write(cb)
		a.Sync()
		b.Sync()
		wa, wb = append(wa, ca...), append(wb, cb...)
	}
	a.Close()
	b.Close()
	os.WriteFile(filepath.Join(src, "frag-a.bin"), wa, 0o644)
	os.WriteFile(filepath.Join(src, "frag-b.bin"), wb, 0o644)
	for _, n := range []string{"frag-a.bin", "frag-b.bin"} {
		st, err := os.Stat(filepath.Join(mnt, n))
		if err != nil {
			t.Fatal(err)
		}
		os.Chtimes(filepath.Join(src, n), st.ModTime(), st.ModTime())
	}
	odd := time.Date(2019, 7, 1, 12, 30, 7, 500_000_000, time.UTC)
	os.WriteFile(filepath.Join(src, "odd-second.txt"), []byte("odd"), 0o644)
	os.Chtimes(filepath.Join(src, "odd-second.txt"), odd, odd)
	fixture.Run(t, nil, "cp", "--preserve=timestamps", filepath.Join(src, "odd-second.txt"), mnt+"/")
	fixture.Run(t, nil, "umount", mnt)
	mounted = false
	return img, src
}

func TestExFAT(t *testing.T) {
	img, src := build(t)
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	d := partinfo.Detect(f, 0, st.Size())
	if d.Type != "exfat" {
		t.Fatalf("detected %q", d.Type)
	}
	fsys, err := fsopen.Open(f, 0, st.Size(), d)
	if err != nil {
		t.Fatal(err)
	}
	info := fsys.Info()
	if info.Label != "Cairn exFAT" || info.Type != "exfat" || info.UUID != d.UUID || info.Used <= 5<<20 || info.Free <= 0 {
		t.Errorf("info %+v", info)
	}
	// exfat-fuse stores whole seconds (an odd second in the 10 ms field).
	if n := fixture.Compare(t, partinfo.AsFS(fsys), src, time.Second); n < 300 {
		t.Errorf("only %d files compared", n)
	}
	gfs := partinfo.AsFS(fsys)
	fi, err := fs.Stat(gfs, "many")
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o555 {
		t.Errorf("directory many: %v %v", fi, err)
	}
	// Names are found ignoring case, as Windows and the Linux exfat
	// driver find them (a mistyped case said "does not exist").
	want, err := fsys.Lookup(fsys.Root(), "frag-a.bin")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"FRAG-A.BIN", "Frag-A.bin"} {
		if got, err := fsys.Lookup(fsys.Root(), n); err != nil || got != want {
			t.Errorf("Lookup(%q) = %d, %v; want inode %d", n, got, err, want)
		}
	}
	if _, err := fsys.Lookup(fsys.Root(), "frag-c.bin"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Lookup of a missing name: %v", err)
	}
}

// TestExFATCorrupt damages the boot region and a directory entry set:
// the first refuses to open, the second fails its checksum (an error,
// never a wrong name).
func TestExFATCorrupt(t *testing.T) {
	img, _ := build(t)
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(data)
	bad[100] ^= 1 // serial number: covered by the boot checksum
	if _, err := exfat.Open(bytes.NewReader(bad), 0, int64(len(bad))); !errors.Is(err, partinfo.ErrCorrupt) {
		t.Errorf("damaged boot sector: %v", err)
	}
	// Find the name entry of "lower.txt" and change one character.
	name := []byte{'l', 0, 'o', 0, 'w', 0, 'e', 0, 'r', 0}
	i := bytes.Index(data, name)
	if i < 0 {
		t.Fatal("name entry not found")
	}
	bad = bytes.Clone(data)
	bad[i] = 'L'
	fsys, err := exfat.Open(bytes.NewReader(bad), 0, int64(len(bad)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = fsys.ReadDir(fsys.Root())
	if !errors.Is(err, partinfo.ErrCorrupt) || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("damaged entry set: %v", err)
	}
}
