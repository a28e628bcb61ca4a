package fat_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/fat"
)

// TestFATDamagedPrimaryUsesSecondCopy zeroes the first 64 KiB of FAT 1
// (FAT32) or all of it (FAT12/16), and separately breaks one chain in
// FAT 1 only: every file must still read right from FAT 2.
func TestFATDamagedPrimaryUsesSecondCopy(t *testing.T) {
	src := t.TempDir()
	want := map[string][]byte{}
	for i := 0; i < 20; i++ {
		b := bytes.Repeat([]byte(fmt.Sprintf("file %d of the damaged FAT test\n", i)), 400+i*97)
		name := fmt.Sprintf("f%02d.txt", i)
		want[name] = b
		if err := os.WriteFile(filepath.Join(src, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, bits := range []int{12, 16, 32} {
		t.Run(fmt.Sprintf("fat%d", bits), func(t *testing.T) {
			size := map[int]int64{12: 2 << 20, 16: 8 << 20, 32: 64 << 20}[bits]
			img := fatImage(t, bits, size, 0, src, "-s", "1")
			raw, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			g, err := partinfo.ParseFATBootSector(raw[:512])
			if err != nil {
				t.Fatal(err)
			}
			if g.NumFATs < 2 {
				t.Fatalf("mkfs.vfat made %d FATs", g.NumFATs)
			}
			fatBytes := g.FATSectors * g.BytesPerSector
			check := func(t *testing.T, img []byte) {
				v, err := fat.Open(bytes.NewReader(img), 0, int64(len(img)))
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				fsys := partinfo.AsFS(v)
				for name, w := range want {
					got, err := fs.ReadFile(fsys, name)
					if err != nil || !bytes.Equal(got, w) {
						t.Errorf("%s: %d bytes, err %v, equal %v", name, len(got), err, bytes.Equal(got, w))
					}
				}
			}
			t.Run("primary zeroed", func(t *testing.T) {
				bad := bytes.Clone(raw)
				clear(bad[g.FATOffset : g.FATOffset+min(64<<10, fatBytes)])
				check(t, bad)
			})
			t.Run("one chain broken in the primary", func(t *testing.T) {
				bad := bytes.Clone(raw)
				// f05.txt's first cluster: mark it free in FAT 1 only.
				v, _ := fat.Open(bytes.NewReader(raw), 0, int64(len(raw)))
				ino, err := v.Lookup(v.Root(), "f05.txt")
				if err != nil {
					t.Fatal(err)
				}
				c := uint32(binary.LittleEndian.Uint16(raw[ino+26:]))
				if bits == 32 {
					c |= uint32(binary.LittleEndian.Uint16(raw[ino+20:])) << 16
				}
				switch bits {
				case 12:
					o := g.FATOffset + int64(c) + int64(c)/2
					if c&1 == 1 {
						bad[o] &= 0x0F
						bad[o+1] = 0
					} else {
						bad[o] = 0
						bad[o+1] &= 0xF0
					}
				case 16:
					binary.LittleEndian.PutUint16(bad[g.FATOffset+int64(c)*2:], 0)
				case 32:
					binary.LittleEndian.PutUint32(bad[g.FATOffset+int64(c)*4:], 0)
				}
				check(t, bad)
			})
		})
	}
}

// TestFATUnpairedSurrogateNames gives 500 files long names made only of
// unpaired surrogates (Windows allows any 16-bit unit): every file must
// list under its own name and read back its own bytes.
func TestFATUnpairedSurrogateNames(t *testing.T) {
	src := t.TempDir()
	const n = 500
	for i := 0; i < n; i++ {
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("Lf%03d", i)), []byte(fmt.Sprintf("content %d", i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	if err := os.Rename(src, filepath.Join(dir, "s")); err != nil {
		t.Fatal(err)
	}
	img := fatImage(t, 32, 64<<20, 0, dir)
	raw, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	patched := 0
	for o := 0; o+32 <= len(raw); o += 32 {
		e := raw[o : o+32]
		if e[11] != 0x0F || e[1] != 'L' || e[3] != 'f' {
			continue
		}
		var i int
		if _, err := fmt.Sscanf(string([]byte{e[5], e[7], e[9]}), "%03d", &i); err != nil {
			continue
		}
		// A lone low surrogate numbering the file, then lone highs.
		binary.LittleEndian.PutUint16(e[1:], uint16(0xDC00+i))
		for _, k := range []int{3, 5, 7, 9} {
			binary.LittleEndian.PutUint16(e[k:], 0xD800)
		}
		patched++
	}
	if patched != n {
		t.Fatalf("patched %d long-name entries, want %d", patched, n)
	}
	v, err := fat.Open(bytes.NewReader(raw), 0, int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	sdir, err := v.Lookup(v.Root(), "s")
	if err != nil {
		t.Fatal(err)
	}
	ents, err := v.ReadDir(sdir)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, e := range ents {
		names[e.Name] = true
	}
	if len(ents) != n || len(names) != n {
		t.Fatalf("%d entries with %d distinct names, want %d", len(ents), len(names), n)
	}
	for i := 0; i < n; i++ {
		name := partinfo.DecodeUTF16Name([]uint16{uint16(0xDC00 + i), 0xD800, 0xD800, 0xD800, 0xD800})
		ino, err := v.Lookup(sdir, name)
		if err != nil {
			t.Errorf("file %d: %v", i, err)
			continue
		}
		buf := make([]byte, 64)
		m, _ := v.ReadAt(ino, buf, 0)
		if got, want := string(buf[:m]), fmt.Sprintf("content %d", i); got != want {
			t.Errorf("file %d reads %q, want %q", i, got, want)
		}
	}
}
