package btrfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
	"github.com/cairnbackup/cairn/partinfo"
)

// overlay reads base with patch laid over it at off.
type overlay struct {
	base  []byte
	off   int64
	patch []byte
}

func (o *overlay) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, io.ErrUnexpectedEOF
	}
	if off >= int64(len(o.base)) {
		return 0, io.EOF
	}
	n := copy(p, o.base[off:])
	for i := 0; i < n; i++ {
		if j := off + int64(i) - o.off; j >= 0 && j < int64(len(o.patch)) {
			p[i] = o.patch[j]
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// FuzzTree builds a small btrfs with mkfs.btrfs (at start-up; images are
// never committed), then mutates one tree block — the root tree's, the
// FS tree's, the chunk tree's or the csum tree's root — at an offset the
// fuzzer picks, refreshes the block's checksum and reads the whole
// filesystem: errors are fine, panics and hangs are not.
func FuzzTree(f *testing.F) {
	testutil.RequireTools(f, "mkfs.btrfs")
	dir := f.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "d"), 0o755)
	os.WriteFile(filepath.Join(src, "a"), []byte("inline\n"), 0o644)
	os.WriteFile(filepath.Join(src, "d", "b"), bytes.Repeat([]byte("regular extent data\n"), 2000), 0o640)
	os.Symlink("d/b", filepath.Join(src, "l"))
	img := filepath.Join(dir, "fuzz.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		f.Fatal(err)
	}
	os.Truncate(img, 200<<20)
	if out, err := exec.Command("mkfs.btrfs", "-q", "-r", src, "--shrink", img).CombinedOutput(); err != nil {
		f.Fatalf("mkfs.btrfs: %v\n%s", err, out)
	}
	base, err := os.ReadFile(img)
	if err != nil {
		f.Fatal(err)
	}
	fs0, err := Open(bytes.NewReader(base), 0, int64(len(base)))
	if err != nil {
		f.Fatal(err)
	}
	fsTree := fs0.tree(fs0.treeIdx[fsTreeID])
	sb := base[superOffset:]
	roots := []uint64{fs0.rootTree, fsTree.root, binary.LittleEndian.Uint64(sb[0x58:]), fs0.csumRoot}
	var phys []int64
	for _, r := range roots {
		c, err := fs0.nodeCopies(r)
		if err != nil {
			f.Fatal(err)
		}
		phys = append(phys, c[0].off)
	}
	ns := int64(fs0.nodesize)
	for i := range roots {
		f.Add(uint8(i), uint16(101), []byte{0xff, 0x00, 0x10})
		f.Add(uint8(i), uint16(96), []byte{0x40})
	}
	f.Fuzz(func(t *testing.T, which uint8, at uint16, patch []byte) {
		if len(patch) > 256 {
			return
		}
		p := phys[int(which)%len(phys)]
		blk := bytes.Clone(base[p : p+ns])
		o := int64(at) % ns
		if o < 32 {
			o = 32 // keep the checksum field for the refresh below
		}
		copy(blk[o:], patch)
		binary.LittleEndian.PutUint32(blk, crc32.Checksum(blk[32:], castagnoli))
		r := &overlay{base: base, off: p, patch: blk}
		fsys, err := Open(r, 0, int64(len(base)))
		if err != nil {
			return
		}
		walkAll(partinfo.Safe(fsys, "btrfs"), fsys.Root(), 0)
	})
}

// walkAll lists, stats, reads, lists the xattrs of and follows everything
// below dir.
func walkAll(fsys partinfo.Filesystem, dir uint64, depth int) {
	if depth > 8 {
		return
	}
	es, err := fsys.ReadDir(dir)
	if err != nil {
		return
	}
	buf := make([]byte, 64<<10)
	for _, e := range es {
		a, err := fsys.Stat(e.Ino)
		if err != nil {
			continue
		}
		partinfo.Xattrs(fsys, e.Ino)
		switch {
		case a.Mode.IsDir():
			walkAll(fsys, e.Ino, depth+1)
		case a.Mode.IsRegular():
			for off := int64(0); off < min(a.Size, 1<<20); off += int64(len(buf)) {
				if _, err := fsys.ReadAt(e.Ino, buf, off); err != nil {
					break
				}
			}
			fsys.SeekData(e.Ino, 0)
			fsys.SeekHole(e.Ino, 0)
		default:
			fsys.Readlink(e.Ino)
		}
	}
}

// FuzzChunkMap parses a chunk item of any profile, stripe count, stripe
// length and device placement, then maps a read inside it: an error, or
// pieces that add up to the read, each copy inside its device (or on a
// device not given) — never a panic.
func FuzzChunkMap(f *testing.F) {
	mkItem := func(typ uint64, stripeLen uint64, sub uint16, stripes [][2]uint64) []byte {
		b := make([]byte, 48+32*len(stripes))
		le := binary.LittleEndian
		le.PutUint64(b, 64<<20)
		le.PutUint64(b[16:], stripeLen)
		le.PutUint64(b[24:], typ)
		le.PutUint16(b[44:], uint16(len(stripes)))
		le.PutUint16(b[46:], sub)
		for i, s := range stripes {
			le.PutUint64(b[48+32*i:], s[0])
			le.PutUint64(b[48+32*i+8:], s[1])
		}
		return b
	}
	f.Add(mkItem(1|bgRaid0, 64<<10, 1, [][2]uint64{{1, 1 << 20}, {2, 1 << 20}}), uint64(100000), uint32(300000))
	f.Add(mkItem(1|bgRaid10, 64<<10, 2, [][2]uint64{{1, 0}, {2, 0}, {3, 0}, {4, 0}}), uint64(0), uint32(1<<20))
	f.Add(mkItem(4|bgRaid1, 64<<10, 1, [][2]uint64{{1, 8 << 20}, {2, 8 << 20}}), uint64(4096), uint32(16384))
	f.Add(mkItem(2|bgDup, 64<<10, 1, [][2]uint64{{1, 8 << 20}, {1, 40 << 20}}), uint64(0), uint32(16384))
	f.Fuzz(func(t *testing.T, item []byte, rel uint64, n uint32) {
		fs := &FS{devs: map[uint64]*device{}, nodesize: 16384}
		for id := uint64(1); id <= 3; id++ { // device 4 is missing
			size := int64(id) * 64 << 20
			fs.devs[id] = &device{name: fmt.Sprint(id), id: id, r: partinfo.Region{R: bytes.NewReader(nil), Size: size}}
		}
		c, _, err := fs.parseChunk(key{256, chunkItem, 1 << 30}, item)
		if err != nil {
			return
		}
		fs.chunks = []chunk{c}
		n %= 4 << 20
		pieces, err := fs.mapLogical(c.logical+rel%c.length, int(n))
		if err != nil {
			return
		}
		total := 0
		for _, p := range pieces {
			if p.n <= 0 || len(p.copies) == 0 {
				t.Fatalf("piece of %d bytes, %d copies", p.n, len(p.copies))
			}
			total += p.n
			for _, d := range p.copies {
				if d.dev != nil && (d.off < 0 || d.off+int64(p.n) > d.dev.r.Size) {
					t.Fatalf("copy at %d+%d outside device %d of %d bytes", d.off, p.n, d.id, d.dev.r.Size)
				}
			}
		}
		if total != int(n) {
			t.Fatalf("pieces add up to %d, read of %d", total, n)
		}
	})
}
