package ext4

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// FuzzExt4 opens small mkfs images with fuzzer-chosen byte flips and walks
// them: no panic (the reader has no recover of its own, so a panic fails
// the run), no hang. Input: byte 0 picks the base image (high bit: flip only the first
// 128 KiB, where the metadata lives), then groups of 4 bytes
// (24-bit offset, xor mask).
func FuzzExt4(f *testing.F) {
	withCsum, _ := smallImage(f)
	noCsum, _ := smallImage(f, "-O", "^metadata_csum")
	inline, _ := smallImage(f, "-O", "^metadata_csum,inline_data")
	bases := [][]byte{withCsum, noCsum, inline}
	if os.Geteuid() == 0 {
		// As root, also fuzz the journal replay with a small crash image.
		bases = append(bases, smallCrashImage(f))
	}

	// Seeds: flips in the superblock, descriptors, inodes and directory blocks.
	flip := func(base byte, offs ...int) []byte {
		in := []byte{base}
		for i, o := range offs {
			in = append(in, byte(o>>16), byte(o>>8), byte(o), byte(0x5A+i))
		}
		return in
	}
	f.Add([]byte{0})
	for b := range bases {
		fsys := mustOpen(f, bases[b])
		table, _ := fsys.inodeTable(0)
		itab := int(table) * int(fsys.sb.blockSize)
		isz := int(fsys.sb.inodeSize)
		rootMap, _ := fsys.fileMapOf(must(fsys.readInode(rootIno)))
		f.Add(flip(byte(b), 1024+0x18, 1024+0x20))
		f.Add(flip(byte(b), 2048+0x8, 2048+0x28))
		f.Add(flip(byte(b), itab+isz+0x28, itab+isz+0x2C)) // root i_block (extent header)
		f.Add(flip(byte(b), itab+isz+0x4, itab+11*isz+0x6C))
		f.Add(flip(byte(b), itab+12*isz+0x28+6, itab+13*isz+0x80))
		if rootMap != nil && len(rootMap.runs) > 0 {
			dir := int(rootMap.runs[0].physical) * int(fsys.sb.blockSize)
			f.Add(flip(byte(b), dir+4, dir+12+4, dir+24+6))
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		img := bytes.Clone(bases[int(in[0]&0x7F)%len(bases)])
		span := len(img)
		if in[0]&0x80 != 0 {
			span = min(span, 128<<10) // metadata and directories live up front
		}
		for in = in[1:]; len(in) >= 4; in = in[4:] {
			off := int(in[0])<<16 | int(in[1])<<8 | int(in[2])
			img[off%span] ^= in[3]
		}
		fsys, err := Open(bytes.NewReader(img), 0, int64(len(img)))
		if err != nil {
			return
		}
		walkBounded(t, fsys.(*FS))
	})
}

// walkBounded visits at most a few hundred inodes, reading a little of
// each. Errors are fine; a panic fails the run by itself (the reader has
// no recover: partinfo.Safe is its callers' boundary).
func walkBounded(t *testing.T, f *FS) {
	seen := map[uint64]bool{}
	queue := []uint64{f.Root()}
	buf := make([]byte, 64<<10)
	for len(queue) > 0 && len(seen) < 300 {
		ino := queue[0]
		queue = queue[1:]
		if seen[ino] {
			continue
		}
		seen[ino] = true
		a, err := f.Stat(ino)
		if err != nil {
			continue
		}
		f.Xattrs(ino)
		switch {
		case a.Mode.IsDir():
			entries, _ := f.ReadDir(ino)
			for i, e := range entries {
				if i < 20 {
					f.Lookup(ino, e.Name)
				}
				queue = append(queue, e.Ino)
			}
			f.Lookup(ino, "..")
		case a.Mode&0o170000 == 0 && a.Mode.IsRegular():
			for _, off := range []int64{0, a.Size - 100, a.Size / 2} {
				f.ReadAt(ino, buf, max(off, 0))
			}
			f.SeekData(ino, 0)
			f.SeekHole(ino, 0)
		default:
			f.Readlink(ino)
		}
	}
}

// smallCrashImage returns a 4 MiB ext4 image copied while mounted, after an
// fsync: needs_recovery is set and the journal holds committed transactions.
func smallCrashImage(t testing.TB) []byte {
	t.Helper()
	testutil.RequireTools(t, "mkfs.ext4", "mount", "umount")
	dir := t.TempDir()
	img := filepath.Join(dir, "live.img")
	makeImage(t, img, 4<<20, "mkfs.ext4", "-b", "1024", "-N", "128", "-U", testUUID)
	mnt, _ := loopMount(t, img, false)
	smallTree(t, mnt)
	fh, err := os.Open(filepath.Join(mnt, "hello.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := fh.Sync(); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	f := mustOpen(t, b)
	if n, err := f.JournalReplay(); n == 0 || err != nil {
		t.Fatalf("crash image: journal replay %d blocks, %v", n, err)
	}
	return b
}
