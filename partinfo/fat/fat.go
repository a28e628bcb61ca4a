package fat

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	"github.com/cairnbackup/cairn/partinfo"
)

// rootIno is the inode number of the root directory.
const rootIno = 1

// maxFATInMemory is the largest FAT read whole into memory at Open;
// larger FATs are read entry by entry.
const maxFATInMemory = 64 << 20

// dirCacheLimit bounds the number of parsed directories kept.
const dirCacheLimit = 512

// FS is an open FAT volume. It is safe for concurrent use.
type FS struct {
	r    io.ReaderAt
	off  int64
	sz   int64
	g    partinfo.FATGeometry
	fat  []byte // whole preferred FAT copy, or nil when read on demand
	info partinfo.Info
	// copies are the volume offsets of the FAT copies, the preferred one
	// (the first whose entry 0 is valid) first; a chain that is corrupt
	// in one copy is looked up in the others.
	copies []int64
	media  byte // media descriptor of the boot sector

	mu     sync.Mutex
	dirs   map[uint64][]entry  // parsed directories by inode
	chains map[uint32][]extent // cluster chains by first cluster
}

// extent is a run of contiguous clusters.
type extent struct {
	first uint32
	count uint32
}

// Open reads the boot sector of the FAT volume at r[off:off+size].
func Open(r io.ReaderAt, off, size int64) (*FS, error) {
	boot := make([]byte, 512)
	if err := readFull(r, boot, off); err != nil {
		return nil, fmt.Errorf("read FAT boot sector: %w", err)
	}
	g, err := partinfo.ParseFATBootSector(boot)
	if err != nil {
		return nil, fmt.Errorf("open FAT volume: %w", err)
	}
	if g.TotalSectors*g.BytesPerSector > size {
		return nil, fmt.Errorf("FAT volume claims %d bytes, partition has %d: %w",
			g.TotalSectors*g.BytesPerSector, size, partinfo.ErrCorrupt)
	}
	f := &FS{r: r, off: off, sz: size, g: g, media: boot[21], dirs: map[uint64][]entry{}, chains: map[uint32][]extent{}}
	f.copies = f.orderCopies()
	if n := g.FATSectors * g.BytesPerSector; n <= maxFATInMemory {
		f.fat = make([]byte, n)
		if err := readFull(r, f.fat, off+f.copies[0]); err != nil {
			return nil, fmt.Errorf("read FAT: %w", err)
		}
	}
	if g.Type == "fat32" && (g.RootCluster < 2 || g.RootCluster > g.ClusterCount+1) {
		return nil, fmt.Errorf("FAT32 root cluster %d out of range: %w", g.RootCluster, partinfo.ErrCorrupt)
	}
	f.info = f.describe()
	return f, nil
}

// readFull reads len(p) bytes at off; a short read is an error.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %d bytes at %d: %w", len(p), off, err)
}

// Info describes the volume.
func (f *FS) Info() partinfo.Info { return f.info }

// describe computes the Info returned by Info.
func (f *FS) describe() partinfo.Info {
	d := partinfo.Detect(f.r, f.off, f.sz)
	label := f.g.Label
	if l, ok := f.volumeLabel(); ok {
		label = l
	}
	info := partinfo.Info{Type: f.g.Type, Label: label, UUID: d.UUID, BlockSize: int(f.g.ClusterSize),
		Size: f.g.TotalSectors * f.g.BytesPerSector, Used: d.Used, Free: d.Free}
	if f.fat != nil {
		// Count free clusters in the FAT itself: FSInfo is only a hint
		// and FAT12/16 have none.
		free := int64(0)
		for c := uint32(2); c < f.g.ClusterCount+2; c++ {
			if v, err := f.next(c); err == nil && v == 0 {
				free++
			}
		}
		info.Free = free * f.g.ClusterSize
		info.Used = int64(f.g.ClusterCount)*f.g.ClusterSize - info.Free
	}
	return info
}

// Root returns the root directory's inode number.
func (f *FS) Root() uint64 { return rootIno }

// orderCopies returns the FAT copies' offsets, valid ones first. A copy
// is valid when its entry 0 holds the media descriptor with every other
// bit set, as every formatter writes it; a damaged primary FAT (zeroed,
// overwritten) fails this and the next copy is used, as chkdsk and
// fsck.fat would.
func (f *FS) orderCopies() []int64 {
	var good, bad []int64
	for i := int64(0); i < f.g.NumFATs; i++ {
		at := f.g.FATOffset + i*f.g.FATSectors*f.g.BytesPerSector
		if v, err := f.entryIn(at, nil, 0); err == nil && f.validEntry0(v) {
			good = append(good, at)
		} else {
			bad = append(bad, at)
		}
	}
	return append(good, bad...)
}

// validEntry0 checks FAT entry 0 (as returned by entryIn) against the media byte.
func (f *FS) validEntry0(v uint32) bool {
	if byte(v) != f.media || f.media < 0xF0 {
		return false
	}
	switch f.g.Type {
	case "fat12":
		return v&0xF00 == 0xF00
	case "fat16":
		return v&0xFF00 == 0xFF00
	default:
		return v&0x0FFFFF00 == 0x0FFFFF00
	}
}

// next returns the preferred FAT copy's entry of cluster c.
func (f *FS) next(c uint32) (uint32, error) {
	return f.entryIn(f.copies[0], f.fat, c)
}

// entryIn returns the entry of cluster c in the FAT copy at volume offset
// at, from mem when that copy is in memory.
func (f *FS) entryIn(at int64, mem []byte, c uint32) (uint32, error) {
	var off int64
	switch f.g.Type {
	case "fat12":
		off = int64(c) + int64(c)/2
	case "fat16":
		off = int64(c) * 2
	default:
		off = int64(c) * 4
	}
	var b [4]byte
	n := 2
	if f.g.Type == "fat32" {
		n = 4
	}
	if off+int64(n) > f.g.FATSectors*f.g.BytesPerSector {
		return 0, fmt.Errorf("FAT entry %d past the FAT: %w", c, partinfo.ErrCorrupt)
	}
	if mem != nil {
		copy(b[:n], mem[off:])
	} else if err := readFull(f.r, b[:n], f.off+at+off); err != nil {
		return 0, fmt.Errorf("read FAT entry %d: %w", c, err)
	}
	switch f.g.Type {
	case "fat12":
		v := uint32(binary.LittleEndian.Uint16(b[:]))
		if c&1 == 1 {
			v >>= 4
		}
		v &= 0xFFF
		if v >= 0xFF7 {
			v |= 0x0FFFF000
		}
		return v, nil
	case "fat16":
		v := uint32(binary.LittleEndian.Uint16(b[:]))
		if v >= 0xFFF7 {
			v |= 0x0FFF0000
		}
		return v, nil
	default:
		return binary.LittleEndian.Uint32(b[:]) & 0x0FFFFFFF, nil
	}
}

// chain returns the cluster chain starting at first as extents. Loops,
// out-of-range clusters, free or bad clusters inside a chain are errors;
// the chain is then followed in the other FAT copies, and the first copy
// that holds it whole wins.
func (f *FS) chain(first uint32) ([]extent, error) {
	f.mu.Lock()
	ex, ok := f.chains[first]
	f.mu.Unlock()
	if ok {
		return ex, nil
	}
	out, err := f.chainIn(first, f.next)
	for _, at := range f.copies[1:] {
		if err == nil {
			break
		}
		if alt, aerr := f.chainIn(first, func(c uint32) (uint32, error) { return f.entryIn(at, nil, c) }); aerr == nil {
			out, err = alt, nil
		}
	}
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	if len(f.chains) > 4096 {
		clear(f.chains)
	}
	f.chains[first] = out
	f.mu.Unlock()
	return out, nil
}

// chainIn follows the chain from first through one FAT copy's next.
func (f *FS) chainIn(first uint32, next func(uint32) (uint32, error)) ([]extent, error) {
	maxC := f.g.ClusterCount + 1
	var out []extent
	c := first
	for steps := uint32(0); ; steps++ {
		if c < 2 || c > maxC {
			return nil, fmt.Errorf("cluster %d in chain from %d out of range: %w", c, first, partinfo.ErrCorrupt)
		}
		if steps > f.g.ClusterCount {
			return nil, fmt.Errorf("cluster chain from %d loops: %w", first, partinfo.ErrCorrupt)
		}
		if n := len(out); n > 0 && out[n-1].first+out[n-1].count == c {
			out[n-1].count++
		} else {
			out = append(out, extent{first: c, count: 1})
		}
		nx, err := next(c)
		if err != nil {
			return nil, err
		}
		if nx >= 0x0FFFFFF8 {
			break
		}
		if nx == 0x0FFFFFF7 || nx == 0 {
			return nil, fmt.Errorf("cluster chain from %d hits a %s cluster after %d: %w",
				first, map[bool]string{true: "bad", false: "free"}[nx != 0], c, partinfo.ErrCorrupt)
		}
		c = nx
	}
	return out, nil
}

// chainBytes returns the number of bytes a chain holds.
func (f *FS) chainBytes(ex []extent) int64 {
	var n int64
	for _, e := range ex {
		n += int64(e.count) * f.g.ClusterSize
	}
	return n
}

// readChain reads from a cluster chain as if it were one contiguous stream.
func (f *FS) readChain(ex []extent, p []byte, off int64) (int, error) {
	done := 0
	pos := int64(0)
	for _, e := range ex {
		elen := int64(e.count) * f.g.ClusterSize
		if off+int64(done) >= pos+elen {
			pos += elen
			continue
		}
		for done < len(p) && off+int64(done) < pos+elen {
			in := off + int64(done) - pos
			n := min(int64(len(p)-done), elen-in)
			disk := f.off + f.g.DataOffset + int64(e.first-2)*f.g.ClusterSize + in
			if err := readFull(f.r, p[done:done+int(n)], disk); err != nil {
				return done, fmt.Errorf("read cluster %d: %w", e.first, err)
			}
			done += int(n)
		}
		pos += elen
		if done == len(p) {
			break
		}
	}
	return done, nil
}
