package ntfs_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/internal/testutil"
	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/internal/fixture"
	"github.com/cairnbackup/cairn/partinfo/ntfs"
)

const edgeSize = 48 << 20

// words returns n bytes of compressible but varied text.
func words(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 17))
	vocab := []string{"cairn", "backup", "point", "zero", "hole", "unit", "cluster", "run", "sparse", "ntfs", "lznt1", "volume"}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(vocab[rng.IntN(len(vocab))])
		if rng.IntN(9) == 0 {
			fmt.Fprintf(&b, " %d\n", rng.IntN(100000))
		} else {
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

func noise(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 99))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// compressedZeroFiles are files whose zero stretches NTFS stores as a
// compression unit's trailing hole merged with following all-zero units.
func compressedZeroFiles() map[string][]byte {
	return map[string][]byte{
		"issue-70k-300kzero-70k.txt": cat(words(1, 70_000), make([]byte, 300_000), words(2, 70_000)),
		"64k-zero-unaligned.txt":     cat(words(3, 5_000), make([]byte, 64<<10), words(4, 5_000)),
		"1m-zero.txt":                cat(words(5, 100_000), make([]byte, 1<<20), words(6, 33)),
		"leading-zero.txt":           cat(make([]byte, 200_000), words(7, 90_000)),
		"trailing-zero.txt":          cat(words(8, 90_000), make([]byte, 500_000)),
		"noise-zero-noise.bin":       cat(noise(9, 100_000), make([]byte, 131_072), noise(10, 70_001)),
		"alternating.txt":            cat(words(11, 40_000), make([]byte, 70_000), words(12, 10), make([]byte, 140_000), words(13, 65_536), make([]byte, 65_536)),
	}
}

// Times outside the int64-nanosecond range 1678-2262.
var (
	time1601 = time.Date(1601, 1, 1, 0, 0, 0, 100, time.UTC)
	time2300 = time.Date(2300, 1, 1, 12, 0, 0, 0, time.UTC)
)

func toFiletime(t time.Time) uint64 {
	return uint64(t.Unix()+11644473600)*1e7 + uint64(t.Nanosecond()/100)
}

// edgeNTFS builds an NTFS image through ntfs-3g holding the edge cases of
// issue #17: compressed files with long zero stretches, an uncompressed
// file for damage, times of 1601 and 2300, a name starting with U+FEFF,
// and files with deduplication and cloud reparse points.
func edgeNTFS(t *testing.T) string {
	t.Helper()
	testutil.RequireTools(t, "mkntfs", "ntfs-3g", "umount")
	testutil.RequireFUSE(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "edge.img")
	mnt := filepath.Join(dir, "mnt")
	must(t, os.Mkdir(mnt, 0o755))
	fixture.Image(t, img, edgeSize)
	fixture.Run(t, nil, "mkntfs", "-F", "-Q", "-q", img)
	fixture.Run(t, nil, "ntfs-3g", "-o", "compression", img, mnt)
	mounted := true
	t.Cleanup(func() {
		if mounted {
			exec.Command("umount", "-l", mnt).Run()
		}
	})
	c := filepath.Join(mnt, "c")
	must(t, os.Mkdir(c, 0o755))
	must(t, unix.Setxattr(c, "system.ntfs_attrib_be", []byte{0, 0, 0x08, 0}, 0))
	for name, data := range compressedZeroFiles() {
		must(t, os.WriteFile(filepath.Join(c, name), data, 0o644))
	}
	must(t, os.WriteFile(filepath.Join(mnt, "plain.bin"), noise(20, 300_000), 0o644))
	for name, tm := range map[string]time.Time{"from-1601.txt": time1601, "from-2300.txt": time2300} {
		p := filepath.Join(mnt, name)
		must(t, os.WriteFile(p, []byte(name), 0o644))
		var times [32]byte
		for i := 0; i < 4; i++ {
			binary.LittleEndian.PutUint64(times[8*i:], toFiletime(tm))
		}
		must(t, unix.Setxattr(p, "system.ntfs_times", times[:], 0))
	}
	must(t, os.WriteFile(filepath.Join(mnt, "\uFEFFbom-name.txt"), []byte("bom"), 0o644))
	for name, tag := range map[string]uint32{"dedup.dat": 0x80000013, "onedrive.dat": 0x9000001a} {
		p := filepath.Join(mnt, name)
		must(t, os.WriteFile(p, []byte("placeholder"), 0o644))
		rp := make([]byte, 8+8)
		binary.LittleEndian.PutUint32(rp, tag)
		binary.LittleEndian.PutUint16(rp[4:], 8)
		copy(rp[8:], "opaque!!")
		must(t, unix.Setxattr(p, "system.ntfs_reparse_data", rp, 0))
	}
	fixture.Run(t, nil, "umount", mnt)
	mounted = false
	return img
}

func openEdge(t *testing.T, img []byte, size int64) partinfo.Filesystem {
	t.Helper()
	v, err := ntfs.Open(bytes.NewReader(img), 0, size)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return partinfo.Safe(v, "ntfs")
}

func TestNTFSIssue17(t *testing.T) {
	path := edgeNTFS(t)
	img, err := os.ReadFile(path)
	must(t, err)
	v := openEdge(t, img, int64(len(img)))
	fsys := partinfo.AsFS(v)

	t.Run("compressed zero stretches read right", func(t *testing.T) {
		for name, want := range compressedZeroFiles() {
			got, err := fs.ReadFile(fsys, "c/"+name)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if !bytes.Equal(got, want) {
				i := 0
				for i < min(len(got), len(want)) && got[i] == want[i] {
					i++
				}
				t.Errorf("%s: %d bytes, want %d; first difference at %d", name, len(got), len(want), i)
			}
		}
		// Holes the seek map reports must read as zeros.
		ino, err := lookupPath(v, "c/issue-70k-300kzero-70k.txt")
		must(t, err)
		h, err := v.SeekHole(ino, 0)
		must(t, err)
		if h < 65536 || h > 70_000+65536 {
			t.Errorf("first hole at %d, want in the zero stretch", h)
		}
	})

	t.Run("times outside 1678-2262", func(t *testing.T) {
		for name, want := range map[string]time.Time{"from-1601.txt": time1601, "from-2300.txt": time2300} {
			st, err := fs.Stat(fsys, name)
			must(t, err)
			if !st.ModTime().Equal(want) {
				t.Errorf("%s: mtime %v, want %v", name, st.ModTime(), want)
			}
		}
	})

	t.Run("name starting with U+FEFF", func(t *testing.T) {
		got, err := fs.ReadFile(fsys, "\uFEFFbom-name.txt")
		if err != nil || string(got) != "bom" {
			t.Errorf("read: %q, %v", got, err)
		}
	})

	t.Run("unsupported reparse points are marked links", func(t *testing.T) {
		for name, want := range map[string]string{
			"dedup.dat":    "unsupported-ntfs-reparse-point:0x80000013:dedup",
			"onedrive.dat": "unsupported-ntfs-reparse-point:0x9000001a:cloud",
		} {
			st, err := fs.Lstat(fsys, name)
			must(t, err)
			if st.Mode()&fs.ModeSymlink == 0 {
				t.Errorf("%s: mode %v, want a symlink marker", name, st.Mode())
				continue
			}
			if got, err := fs.ReadLink(fsys, name); got != want || err != nil {
				t.Errorf("%s: readlink %q, %v; want %q", name, got, err, want)
			}
		}
	})

	// Damage: every read that the volume cannot satisfy is an error.
	mftOff := int64(binary.LittleEndian.Uint64(img[0x30:])) * int64(binary.LittleEndian.Uint16(img[0x0B:])) * int64(img[0x0D])
	dataAttr := func(t *testing.T, img []byte, name string) int {
		t.Helper()
		ino, err := lookupPath(v, name)
		must(t, err)
		rec := int(mftOff) + int(ino)*1024
		if string(img[rec:rec+4]) != "FILE" {
			t.Fatalf("record %d of %s not at %d", ino, name, rec)
		}
		for a := rec + int(binary.LittleEndian.Uint16(img[rec+0x14:])); a < rec+1024; {
			typ := binary.LittleEndian.Uint32(img[a:])
			if typ == 0xFFFFFFFF {
				break
			}
			if typ == 0x80 && img[a+8] == 1 && img[a+9] == 0 {
				return a
			}
			a += int(binary.LittleEndian.Uint32(img[a+4:]))
		}
		t.Fatalf("%s has no non-resident unnamed $DATA", name)
		return 0
	}
	readErr := func(t *testing.T, img []byte, size int64, name string, off int64) error {
		t.Helper()
		d := openEdge(t, img, size)
		ino, err := lookupPath(d, name)
		must(t, err)
		buf := make([]byte, 65536)
		_, err = d.ReadAt(ino, buf, off)
		if err == io.EOF {
			err = nil
		}
		return err
	}

	t.Run("run past the volume is an error", func(t *testing.T) {
		bad := bytes.Clone(img)
		a := dataAttr(t, bad, "plain.bin")
		rl := a + int(binary.LittleEndian.Uint16(bad[a+0x20:]))
		h := bad[rl]
		ln, on := int(h&0xF), int(h>>4)
		if on < 2 {
			t.Fatalf("run offset field of %d bytes", on)
		}
		clear(bad[rl+1+ln : rl+1+ln+on])
		binary.LittleEndian.PutUint16(bad[rl+1+ln:], 0x7000) // cluster 28672 of 12288
		if err := readErr(t, bad, int64(len(bad)), "plain.bin", 0); err == nil {
			t.Errorf("read of a run past the volume succeeded")
		}
	})

	t.Run("truncated volume is an error", func(t *testing.T) {
		a := dataAttr(t, img, "plain.bin")
		rl := a + int(binary.LittleEndian.Uint16(img[a+0x20:]))
		h := img[rl]
		ln, on := int(h&0xF), int(h>>4)
		lcn := binary.LittleEndian.Uint64(append(bytes.Clone(img[rl+1+ln:rl+1+ln+on]), make([]byte, 8)...))
		cut := int64(lcn)*4096 + 8192
		if err := readErr(t, img[:cut], int64(len(img)), "plain.bin", 16384); err == nil {
			t.Errorf("read past the end of a truncated volume succeeded")
		}
	})

	t.Run("invalid compression unit is an error", func(t *testing.T) {
		for _, cu := range []uint16{0, 31} {
			bad := bytes.Clone(img)
			a := dataAttr(t, bad, "c/issue-70k-300kzero-70k.txt")
			binary.LittleEndian.PutUint16(bad[a+0x22:], cu)
			if err := readErr(t, bad, int64(len(bad)), "c/issue-70k-300kzero-70k.txt", 0); err == nil {
				t.Errorf("compression unit 2^%d: read succeeded", cu)
			}
		}
	})

	t.Run("absurd size is an error", func(t *testing.T) {
		bad := bytes.Clone(img)
		a := dataAttr(t, bad, "plain.bin")
		binary.LittleEndian.PutUint64(bad[a+0x30:], 1<<62)
		err := readErr(t, bad, int64(len(bad)), "plain.bin", 1<<40)
		if err == nil || !errors.Is(err, partinfo.ErrCorrupt) {
			t.Errorf("read at 1 TiB of a 2^62-byte file on a 48 MiB volume: %v, want ErrCorrupt", err)
		}
		if !strings.Contains(fmt.Sprint(err), "beyond") {
			t.Errorf("error does not say why: %v", err)
		}
	})
}
