package exfat

import (
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"math/bits"
	"strings"
	"sync"
	"time"
	"unicode/utf16"

	"github.com/cairnbackup/cairn/partinfo"
)

const (
	rootIno      = 1
	entrySize    = 32
	typeEnd      = 0x00
	typeBitmap   = 0x81
	typeLabel    = 0x83
	typeFile     = 0x85
	typeStream   = 0xC0
	typeName     = 0xC1
	attrDir      = 0x10
	flagNoChain  = 0x02
	fatEOC       = 0xFFFFFFFF
	maxDirBytes  = 256 << 20 // the format's limit
	maxDirsCache = 512
)

// FS is an open exFAT volume.
type FS struct {
	r           io.ReaderAt
	off, size   int64
	bps         int64
	clusterSize int64
	fatOff      int64 // bytes from volume start
	heapOff     int64
	clusters    uint32
	rootCluster uint32
	info        partinfo.Info

	mu      sync.Mutex
	dirs    map[uint64]*dir   // parsed directories by inode (bounded)
	parents map[uint64]dirLoc // inode -> where its parent directory is
	order   []uint64          // insertion order of dirs, for eviction
}

// dirLoc is enough to read a directory again.
type dirLoc struct {
	ino     uint64
	cluster uint32
	size    int64
	noChain bool
}

// entry is one parsed entry set.
type entry struct {
	ino          uint64
	name         string
	attr         uint16
	cluster      uint32
	size         int64 // DataLength
	valid        int64 // ValidDataLength
	noChain      bool
	mtime, atime time.Time
	ctime        time.Time
}

func (e *entry) isDir() bool { return e.attr&attrDir != 0 }

type dir struct {
	loc     dirLoc
	entries []entry
	byName  map[string]int
	byIno   map[uint64]int
}

func readFull(r io.ReaderAt, p []byte, off int64) error { return partinfo.ReadFull(r, p, off) }

func corrupt(format string, a ...any) error {
	return fmt.Errorf("exfat: "+format+": %w", append(a, partinfo.ErrCorrupt)...)
}

// Open reads the boot region of the exFAT volume at r[off:off+size].
func Open(r io.ReaderAt, off, size int64) (*FS, error) {
	b := make([]byte, 512)
	if err := readFull(r, b, off); err != nil {
		return nil, fmt.Errorf("exfat: read boot sector: %w", err)
	}
	if string(b[3:11]) != "EXFAT   " || b[510] != 0x55 || b[511] != 0xAA {
		return nil, corrupt("no exFAT boot sector")
	}
	le := binary.LittleEndian
	bpsShift, spcShift := b[108], b[109]
	if bpsShift < 9 || bpsShift > 12 || int(bpsShift)+int(spcShift) > 25 {
		return nil, corrupt("sector shift %d, cluster shift %d", bpsShift, spcShift)
	}
	f := &FS{r: r, off: off, size: size, bps: 1 << bpsShift, dirs: map[uint64]*dir{}, parents: map[uint64]dirLoc{}}
	f.clusterSize = f.bps << spcShift
	// Boot checksum over sectors 0-10 (without VolumeFlags and PercentInUse).
	region := make([]byte, 12*f.bps)
	if err := readFull(r, region, off); err != nil {
		return nil, fmt.Errorf("exfat: read boot region: %w", err)
	}
	var sum uint32
	for i := 0; i < int(11*f.bps); i++ {
		if i == 106 || i == 107 || i == 112 {
			continue
		}
		sum = bits.RotateLeft32(sum, -1) + uint32(region[i])
	}
	if got := le.Uint32(region[11*f.bps:]); got != sum {
		return nil, corrupt("boot checksum %08x, checksum sector says %08x", sum, got)
	}
	f.fatOff = int64(le.Uint32(b[80:])) * f.bps
	fatLen := int64(le.Uint32(b[84:])) * f.bps
	if b[110] == 2 && le.Uint16(b[106:])&1 != 0 {
		f.fatOff += fatLen // the second FAT is active
	}
	f.heapOff = int64(le.Uint32(b[88:])) * f.bps
	f.clusters = le.Uint32(b[92:])
	f.rootCluster = le.Uint32(b[96:])
	volLen := int64(le.Uint64(b[72:])) * f.bps
	if volLen <= 0 || volLen > size || f.fatOff+int64(f.clusters+2)*4 > size ||
		f.heapOff+int64(f.clusters)*f.clusterSize > size || f.rootCluster < 2 || f.rootCluster >= f.clusters+2 {
		return nil, corrupt("geometry (volume %d bytes, FAT at %d, heap at %d, %d clusters, root %d) does not fit %d bytes",
			volLen, f.fatOff, f.heapOff, f.clusters, f.rootCluster, size)
	}
	serial := le.Uint32(b[100:])
	f.info = partinfo.Info{Type: "exfat", UUID: fmt.Sprintf("%04X-%04X", serial>>16, serial&0xffff),
		BlockSize: int(f.clusterSize), Size: volLen, Used: -1, Free: -1}
	// The label and allocation bitmap are root entries outside any
	// entry set: read them without parsing (and failing on) the sets.
	f.info.Label = rootLabel(f, dirLoc{ino: rootIno, cluster: f.rootCluster})
	return f, nil
}

// Info describes the volume; used and free come from the allocation bitmap.
func (f *FS) Info() partinfo.Info { return f.info }

// Root is inode 1.
func (f *FS) Root() uint64 { return rootIno }

// next returns the cluster after c in a FAT chain.
func (f *FS) next(c uint32) (uint32, error) {
	b := make([]byte, 4)
	if err := readFull(f.r, b, f.off+f.fatOff+int64(c)*4); err != nil {
		return 0, fmt.Errorf("exfat: read FAT entry %d: %w", c, err)
	}
	return binary.LittleEndian.Uint32(b), nil
}

// run is a contiguous stretch of clusters.
type run struct {
	first uint32
	count int64
}

// chain returns the runs holding n bytes from cluster first.
func (f *FS) chain(first uint32, n int64, noChain bool) ([]run, error) {
	if n == 0 {
		return nil, nil
	}
	need := (n + f.clusterSize - 1) / f.clusterSize
	if first < 2 || first >= f.clusters+2 {
		return nil, corrupt("cluster %d outside the %d clusters", first, f.clusters)
	}
	if noChain {
		if int64(first)-2+need > int64(f.clusters) {
			return nil, corrupt("contiguous file of %d clusters from %d runs past the %d clusters", need, first, f.clusters)
		}
		return []run{{first, need}}, nil
	}
	var runs []run
	c := first
	for got := int64(0); got < need; got++ {
		if c < 2 || c >= f.clusters+2 {
			return nil, corrupt("cluster chain from %d reaches cluster %#x after %d clusters of %d", first, c, got, need)
		}
		if len(runs) > 0 && runs[len(runs)-1].first+uint32(runs[len(runs)-1].count) == c {
			runs[len(runs)-1].count++
		} else {
			runs = append(runs, run{c, 1})
		}
		nx, err := f.next(c)
		if err != nil {
			return nil, err
		}
		if got+1 < need && nx == fatEOC {
			return nil, corrupt("cluster chain from %d ends after %d clusters, %d needed", first, got+1, need)
		}
		c = nx
	}
	return runs, nil
}

// readRuns reads p at byte off of the data the runs hold.
func (f *FS) readRuns(runs []run, p []byte, off int64) error {
	for _, r := range runs {
		l := r.count * f.clusterSize
		if off >= l {
			off -= l
			continue
		}
		k := min(int64(len(p)), l-off)
		if err := readFull(f.r, p[:k], f.off+f.heapOff+int64(r.first-2)*f.clusterSize+off); err != nil {
			return fmt.Errorf("exfat: read cluster data: %w", err)
		}
		p, off = p[k:], 0
		if len(p) == 0 {
			return nil
		}
	}
	if len(p) > 0 {
		return corrupt("read past the clusters of a file")
	}
	return nil
}

// dirBytes reads a directory's entries and the volume offset of each
// 32-byte slot.
func (f *FS) dirBytes(loc dirLoc) ([]byte, func(i int) uint64, error) {
	size := loc.size
	if loc.ino == rootIno {
		// The root has no stream entry: follow its chain to the end.
		var runs []run
		c := loc.cluster
		for total := int64(0); ; total += f.clusterSize {
			if total >= maxDirBytes || c < 2 || c >= f.clusters+2 {
				return nil, nil, corrupt("root directory chain at cluster %#x", c)
			}
			if len(runs) > 0 && runs[len(runs)-1].first+uint32(runs[len(runs)-1].count) == c {
				runs[len(runs)-1].count++
			} else {
				runs = append(runs, run{c, 1})
			}
			nx, err := f.next(c)
			if err != nil {
				return nil, nil, err
			}
			if nx == fatEOC {
				size = total + f.clusterSize
				break
			}
			c = nx
		}
		return f.dirRead(runs, size)
	}
	if size > maxDirBytes || size%entrySize != 0 {
		return nil, nil, corrupt("directory of %d bytes", size)
	}
	runs, err := f.chain(loc.cluster, size, loc.noChain)
	if err != nil {
		return nil, nil, err
	}
	return f.dirRead(runs, size)
}

func (f *FS) dirRead(runs []run, size int64) ([]byte, func(i int) uint64, error) {
	b := make([]byte, size)
	if err := f.readRuns(runs, b, 0); err != nil {
		return nil, nil, err
	}
	at := func(i int) uint64 {
		off := int64(i) * entrySize
		for _, r := range runs {
			l := r.count * f.clusterSize
			if off < l {
				return uint64(f.heapOff + int64(r.first-2)*f.clusterSize + off)
			}
			off -= l
		}
		return 0
	}
	return b, at, nil
}

// dir returns the parsed directory (cached).
func (f *FS) dir(ino uint64, loc dirLoc) (*dir, error) {
	f.mu.Lock()
	d := f.dirs[ino]
	f.mu.Unlock()
	if d != nil {
		return d, nil
	}
	b, at, err := f.dirBytes(loc)
	if err != nil {
		return nil, err
	}
	d = &dir{loc: loc, byName: map[string]int{}, byIno: map[uint64]int{}}
	for i := 0; i+1 <= len(b)/entrySize; i++ {
		e := b[i*entrySize : (i+1)*entrySize]
		t := e[0]
		if t == typeEnd {
			break
		}
		if t != typeFile {
			continue
		}
		n := int(e[1])
		if n < 2 || n > 18 || i+n >= len(b)/entrySize {
			return nil, corrupt("directory %d: file entry at slot %d with %d secondary entries", ino, i, n)
		}
		set := b[i*entrySize : (i+1+n)*entrySize]
		ent, err := parseSet(set)
		if err != nil {
			return nil, fmt.Errorf("directory %d slot %d: %w", ino, i, err)
		}
		ent.ino = at(i)
		if _, dup := d.byName[ent.name]; dup {
			return nil, corrupt("directory %d: name %q twice", ino, ent.name)
		}
		d.byName[ent.name] = len(d.entries)
		d.byIno[ent.ino] = len(d.entries)
		d.entries = append(d.entries, ent)
		i += n
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.order) >= maxDirsCache {
		delete(f.dirs, f.order[0])
		f.order = f.order[1:]
	}
	f.dirs[ino] = d
	f.order = append(f.order, ino)
	for _, e := range d.entries {
		f.parents[e.ino] = loc
	}
	return d, nil
}

// parseSet decodes a File entry set after checking its checksum.
func parseSet(set []byte) (entry, error) {
	var sum uint16
	for i, c := range set {
		if i == 2 || i == 3 {
			continue
		}
		sum = bits.RotateLeft16(sum, -1) + uint16(c)
	}
	le := binary.LittleEndian
	if got := le.Uint16(set[2:]); got != sum {
		return entry{}, corrupt("entry set checksum %04x, entry says %04x", sum, got)
	}
	st := set[entrySize : 2*entrySize]
	if st[0] != typeStream {
		return entry{}, corrupt("file entry without a stream extension")
	}
	e := entry{attr: le.Uint16(set[4:]), cluster: le.Uint32(st[20:]), size: int64(le.Uint64(st[24:])),
		valid: int64(le.Uint64(st[8:])), noChain: st[1]&flagNoChain != 0}
	if e.size < 0 || e.valid < 0 || e.valid > e.size {
		return entry{}, corrupt("sizes: valid %d of %d", e.valid, e.size)
	}
	nameLen := int(st[3])
	var units []uint16
	for k := 2; k*entrySize < len(set); k++ {
		ne := set[k*entrySize : (k+1)*entrySize]
		if ne[0] != typeName {
			break
		}
		for j := 0; j < 15; j++ {
			units = append(units, le.Uint16(ne[2+2*j:]))
		}
	}
	if nameLen == 0 || len(units) < nameLen {
		return entry{}, corrupt("name of %d units in %d name entries", nameLen, len(units)/15)
	}
	e.name = string(utf16.Decode(units[:nameLen]))
	if e.name == "." || e.name == ".." || strings.ContainsAny(e.name, "/\x00") {
		return entry{}, corrupt("file name %q", e.name)
	}
	e.ctime = stamp(le.Uint32(set[8:]), set[20], set[22])
	e.mtime = stamp(le.Uint32(set[12:]), set[21], set[23])
	e.atime = stamp(le.Uint32(set[16:]), 0, set[24])
	return e, nil
}

// stamp decodes an exFAT timestamp, its 10 ms increment and UTC offset.
func stamp(ts uint32, inc10ms, utcOff byte) time.Time {
	if ts == 0 {
		return time.Unix(0, 0).UTC()
	}
	t := time.Date(1980+int(ts>>25), time.Month(ts>>21&0xf), int(ts>>16&0x1f),
		int(ts>>11&0x1f), int(ts>>5&0x3f), int(ts&0x1f)*2, int(min(inc10ms, 199))*10_000_000, time.UTC)
	if utcOff&0x80 != 0 {
		off := int(int8(utcOff<<1) >> 1) // 7-bit signed, 15-minute units
		t = t.Add(-time.Duration(off) * 15 * time.Minute)
	}
	return t
}

func rootLabel(f *FS, root dirLoc) string {
	b, _, err := f.dirBytes(root)
	if err != nil {
		return ""
	}
	le := binary.LittleEndian
	label := ""
	for i := 0; i+entrySize <= len(b); i += entrySize {
		switch b[i] {
		case typeEnd:
			return label
		case typeLabel:
			n := min(int(b[i+1]), 11)
			u := make([]uint16, n)
			for j := range u {
				u[j] = le.Uint16(b[i+2+2*j:])
			}
			label = string(utf16.Decode(u))
		case typeBitmap:
			f.countBitmap(le.Uint32(b[i+20:]), int64(le.Uint64(b[i+24:])))
		}
	}
	return label
}

// countBitmap sets Used and Free from the allocation bitmap.
func (f *FS) countBitmap(cluster uint32, size int64) {
	if size <= 0 || size > int64(f.clusters)/8+1 {
		return
	}
	runs, err := f.chain(cluster, size, false)
	if err != nil {
		return
	}
	b := make([]byte, size)
	if f.readRuns(runs, b, 0) != nil {
		return
	}
	used := int64(0)
	for i := uint32(0); i < f.clusters; i++ {
		if b[i/8]&(1<<(i%8)) != 0 {
			used++
		}
	}
	f.info.Used = used * f.clusterSize
	f.info.Free = (int64(f.clusters) - used) * f.clusterSize
}

// lookupEntry finds the entry of an inode through its parent.
func (f *FS) lookupEntry(ino uint64) (*entry, error) {
	f.mu.Lock()
	loc, ok := f.parents[ino]
	f.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("exfat: inode %d was never listed: %w", ino, fs.ErrNotExist)
	}
	d, err := f.dir(loc.ino, loc)
	if err != nil {
		return nil, err
	}
	i, ok := d.byIno[ino]
	if !ok {
		return nil, fmt.Errorf("exfat: inode %d: %w", ino, fs.ErrNotExist)
	}
	return &d.entries[i], nil
}

// dirOf returns the parsed directory of inode ino.
func (f *FS) dirOf(ino uint64) (*dir, error) {
	if ino == rootIno {
		return f.dir(rootIno, dirLoc{ino: rootIno, cluster: f.rootCluster})
	}
	e, err := f.lookupEntry(ino)
	if err != nil {
		return nil, err
	}
	if !e.isDir() {
		return nil, fmt.Errorf("exfat: inode %d: %w", ino, partinfo.ErrNotDir)
	}
	return f.dir(ino, dirLoc{ino: ino, cluster: e.cluster, size: e.size, noChain: e.noChain})
}

// Stat returns an inode's attributes.
func (f *FS) Stat(ino uint64) (partinfo.Attr, error) {
	if ino == rootIno {
		// No times are stored for the root: the Unix epoch, as
		// exfat-fuse shows it (Go's zero time is year 1).
		epoch := time.Unix(0, 0).UTC()
		return partinfo.Attr{Ino: rootIno, Mode: fs.ModeDir | 0o555, Nlink: 2, Mtime: epoch, Atime: epoch, Ctime: epoch}, nil
	}
	e, err := f.lookupEntry(ino)
	if err != nil {
		return partinfo.Attr{}, err
	}
	a := partinfo.Attr{Ino: ino, Mode: 0o444, Nlink: 1, Size: e.size, Mtime: e.mtime, Atime: e.atime, Ctime: e.ctime,
		Blocks: (e.size + f.clusterSize - 1) / f.clusterSize * f.clusterSize / 512}
	if e.isDir() {
		a.Mode, a.Nlink = fs.ModeDir|0o555, 2
	}
	return a, nil
}

// ReadDir lists a directory.
func (f *FS) ReadDir(ino uint64) ([]partinfo.DirEntry, error) {
	d, err := f.dirOf(ino)
	if err != nil {
		return nil, err
	}
	out := make([]partinfo.DirEntry, 0, len(d.entries))
	for _, e := range d.entries {
		t := fs.FileMode(0)
		if e.isDir() {
			t = fs.ModeDir
		}
		out = append(out, partinfo.DirEntry{Name: e.name, Ino: e.ino, Type: t})
	}
	return out, nil
}

// Lookup finds a name in a directory (exactly as stored).
func (f *FS) Lookup(dirIno uint64, name string) (uint64, error) {
	d, err := f.dirOf(dirIno)
	if err != nil {
		return 0, err
	}
	if i, ok := d.byName[name]; ok {
		return d.entries[i].ino, nil
	}
	// exFAT names are case-insensitive (Windows and the Linux exfat
	// driver look them up through the up-case table): exact first, then
	// ignoring case, as the FAT reader does.
	for _, e := range d.entries {
		if strings.EqualFold(e.name, name) {
			return e.ino, nil
		}
	}
	return 0, fmt.Errorf("exfat: %q: %w", name, fs.ErrNotExist)
}

// Readlink fails: exFAT has no symbolic links.
func (f *FS) Readlink(ino uint64) (string, error) {
	return "", fmt.Errorf("exfat: inode %d: %w", ino, partinfo.ErrNotSymlink)
}

// ReadAt reads a file; bytes past the valid data length are zeros.
func (f *FS) ReadAt(ino uint64, p []byte, off int64) (int, error) {
	e, err := f.lookupEntry(ino)
	if err != nil {
		return 0, err
	}
	if e.isDir() {
		return 0, fmt.Errorf("exfat: inode %d: %w", ino, partinfo.ErrNotRegular)
	}
	if off < 0 {
		return 0, fmt.Errorf("exfat: negative offset")
	}
	if off >= e.size {
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > e.size-off {
		p, eof = p[:e.size-off], io.EOF
	}
	n := len(p)
	if off < e.valid {
		k := min(int64(len(p)), e.valid-off)
		runs, err := f.chain(e.cluster, e.valid, e.noChain)
		if err != nil {
			return 0, fmt.Errorf("exfat: file %q: %w", e.name, err)
		}
		if err := f.readRuns(runs, p[:k], off); err != nil {
			return 0, err
		}
		p = p[k:]
	}
	clear(p)
	return n, eof
}

// SeekData: exFAT files have no holes (the tail past the valid data
// length is reported as data, as the kernel does).
func (f *FS) SeekData(ino uint64, off int64) (int64, error) {
	if _, err := f.sizeAbove(ino, off); err != nil {
		return 0, err
	}
	return off, nil
}

// SeekHole returns the file size.
func (f *FS) SeekHole(ino uint64, off int64) (int64, error) {
	return f.sizeAbove(ino, off)
}

// sizeAbove returns the file's size, or partinfo.ErrNoData when off is at
// or past it.
func (f *FS) sizeAbove(ino uint64, off int64) (int64, error) {
	a, err := f.Stat(ino)
	if err != nil {
		return 0, err
	}
	if off >= a.Size {
		return 0, partinfo.ErrNoData
	}
	return a.Size, nil
}
