package test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// rawDirent is one entry as getdents64 returns it.
type rawDirent struct {
	Name string
	Ino  uint64
	Type uint8
	Off  int64
}

func (e rawDirent) String() string { return fmt.Sprintf("%s(ino %d type %d)", e.Name, e.Ino, e.Type) }

// getdentsAll lists dir through getdents64 with a buffer of bufSize bytes
// (os.ReadDir hides "." and ".."), in the order the filesystem gives.
func getdentsAll(t testing.TB, dir string, bufSize int) (entries []rawDirent, calls int) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	buf := make([]byte, bufSize)
	for {
		n, err := unix.Getdents(fd, buf)
		calls++
		if err != nil {
			t.Fatalf("getdents %s (buffer %d): %v", dir, bufSize, err)
		}
		if n == 0 {
			return entries, calls
		}
		for b := buf[:n]; len(b) > 0; {
			// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			name := b[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			entries = append(entries, rawDirent{Name: string(name), Ino: binary.NativeEndian.Uint64(b[0:8]),
				Off: int64(binary.NativeEndian.Uint64(b[8:16])), Type: b[18]})
			b = b[reclen:]
		}
	}
}

// byName sorts entries by name (a kernel filesystem's order is its own).
func byName(es []rawDirent) []rawDirent {
	out := append([]rawDirent(nil), es...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func lstatIno(t testing.TB, p string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// checkDots asserts that a listing of dir holds "." and ".." first, as
// directories, with the inode numbers stat reports for dir and its parent
// (parentIno), and no other entry twice.
func checkDots(t *testing.T, dir string, es []rawDirent, parentIno uint64) {
	t.Helper()
	if len(es) < 2 || es[0].Name != "." || es[1].Name != ".." {
		t.Errorf("listing of %s starts %v, want . and .. first as a kernel filesystem lists them", dir, es[:min(len(es), 3)])
		return
	}
	if self := lstatIno(t, dir); es[0].Ino != self || es[0].Type != unix.DT_DIR {
		t.Errorf("%s/. is %v, want inode %d (what stat says) and type directory", dir, es[0], self)
	}
	if es[1].Ino != parentIno || es[1].Type != unix.DT_DIR {
		t.Errorf("%s/.. is %v, want inode %d (the parent's) and type directory", dir, es[1], parentIno)
	}
	seen := map[string]bool{}
	for _, e := range es {
		if seen[e.Name] {
			t.Errorf("listing of %s has %q twice", dir, e.Name)
		}
		seen[e.Name] = true
	}
}

// TestMountListsDotEntries: every directory of the mount lists "." and
// ".." as a kernel filesystem does (ls -la, scripts that count entries),
// and a guest filesystem's directory lists the same entries (names, types,
// and the guest's inode numbers) as a kernel loop mount of the same
// image, whether read in one getdents call or in many small ones.
func TestMountListsDotEntries(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireFUSE(t)
	testutil.RequireTools(t, "mkfs.ext4", "mount", "umount")
	dir := t.TempDir()
	stage := filepath.Join(dir, "stage")
	// sub/ has enough long names that a listing spans many small getdents
	// buffers and more than one READDIRPLUS reply.
	for _, d := range []string{"sub/inner", "empty"} {
		if err := os.MkdirAll(filepath.Join(stage, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 300 {
		name := fmt.Sprintf("file-with-a-rather-long-name-%04d%s", i, strings.Repeat("x", i%40))
		if err := os.WriteFile(filepath.Join(stage, "sub", name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"top.txt", "sub/inner/deep.txt"} {
		if err := os.WriteFile(filepath.Join(stage, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("top.txt", filepath.Join(stage, "link")); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "ext4.img")
	sh(t, "mkfs.ext4", "-q", "-F", "-d", stage, img, "64M")
	kmnt := filepath.Join(dir, "kmnt")
	if err := os.Mkdir(kmnt, 0o755); err != nil {
		t.Fatal(err)
	}
	sh(t, "mount", "-o", "loop,ro", img, kmnt)
	t.Cleanup(func() { runQuiet("umount", kmnt) })

	repoDir := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repoDir, "init")
	mustCairn(t, "--repo", repoDir, "import", "--vm", "w", "--disk", "sda", img)
	mnt := filepath.Join(dir, "mnt")
	mountTraced(t, repoDir, mnt)
	root := filepath.Join(mnt, "w", "latest", "fs", "sda", "whole")

	// Guest directories: the small-buffer listing comes first, while the
	// kernel has none cached, so it continues listings at offsets.
	for _, rel := range []string{"sub", ".", "sub/inner", "empty"} {
		p := filepath.Join(root, rel)
		small, calls := getdentsAll(t, p, 128)
		one, _ := getdentsAll(t, p, 1<<20)
		if !reflect.DeepEqual(small, one) {
			t.Errorf("%s: listing read in %d getdents calls of 128 bytes differs from one read at once:\n%v\n%v", rel, calls, small, one)
		}
		if rel == "sub" && calls < 20 {
			t.Errorf("%s: listing took %d getdents calls of 128 bytes, want many (the test needs offsets continued)", rel, calls)
		}
		parent := lstatIno(t, filepath.Join(p, ".."))
		checkDots(t, p, one, parent)

		kernel, _ := getdentsAll(t, filepath.Join(kmnt, rel), 1<<20)
		var want, got []string
		for _, e := range byName(kernel) {
			want = append(want, fmt.Sprintf("%s type %d", e.Name, e.Type))
		}
		for _, e := range byName(one) {
			got = append(got, fmt.Sprintf("%s type %d", e.Name, e.Type))
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: names and types differ from a kernel mount of the image:\ncairn:  %v\nkernel: %v", rel, got, want)
		}
		// Inode numbers: each as stat reports it through the mount, and
		// the guest's own number (the mount's carry a per-volume salt in
		// the top 16 bits) for every entry but the root directory, which
		// keeps the volume directory's number.
		kino := map[string]uint64{}
		for _, e := range kernel {
			kino[e.Name] = e.Ino
		}
		rootIno := lstatIno(t, kmnt)
		for _, e := range one {
			if st := lstatIno(t, filepath.Join(p, e.Name)); e.Ino != st {
				t.Errorf("%s/%s: listed with inode %d, stat says %d", rel, e.Name, e.Ino, st)
			}
			k, ok := kino[e.Name]
			if !ok || k == rootIno {
				continue
			}
			if e.Ino&(1<<48-1) != k {
				t.Errorf("%s/%s: listed with inode %d (guest %d), a kernel mount lists guest inode %d", rel, e.Name, e.Ino, e.Ino&(1<<48-1), k)
			}
		}
	}
	// The guest root's ".." is the disk's directory in fs/.
	if es, _ := getdentsAll(t, root, 4096); len(es) > 1 && es[1].Ino != lstatIno(t, filepath.Join(mnt, "w", "latest", "fs", "sda")) {
		t.Errorf("guest root's .. is inode %d, want fs/sda's", es[1].Ino)
	}

	// The mount's own directories. The root's ".." is itself, as a
	// kernel filesystem's root lists it.
	es, _ := getdentsAll(t, mnt, 4096)
	checkDots(t, mnt, es, lstatIno(t, mnt))
	point, err := os.Readlink(filepath.Join(mnt, "w", "latest"))
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"w", filepath.Join("w", point), filepath.Join("w", point, "disks"),
		filepath.Join("w", point, "fs"), filepath.Join("w", point, "fs", "sda")} {
		p := filepath.Join(mnt, rel)
		small, _ := getdentsAll(t, p, 64)
		es, _ := getdentsAll(t, p, 4096)
		if !reflect.DeepEqual(small, es) {
			t.Errorf("%s: listing read in small getdents calls differs from one read at once:\n%v\n%v", rel, small, es)
		}
		checkDots(t, p, es, lstatIno(t, filepath.Join(p, "..")))
		names, err := os.ReadDir(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != len(names)+2 {
			t.Errorf("%s: getdents lists %d entries, os.ReadDir %d: want the same and . and ..", rel, len(es), len(names))
		}
	}
}
