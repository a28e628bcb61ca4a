package blockmap

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"
)

// BlockError reports a block that could not be read correctly. It wraps
// ErrCorrupt when the stored bytes fail their checksum.
type BlockError struct {
	VM     string
	Point  string
	Disk   string
	Offset int64
	Gen    uint32
	Err    error
}

func (e *BlockError) Error() string {
	return fmt.Sprintf("VM %s point %s disk %s: block at offset %d (stored by generation %d): %v", e.VM, e.Point, e.Disk, e.Offset, e.Gen, e.Err)
}

func (e *BlockError) Unwrap() error { return e.Err }

// Extent is a byte range of a disk.
type Extent struct {
	Offset int64 `json:"offset"`
	Length int64 `json:"length"`
}

// DiskReader reads one disk as it was at one recovery point. It is an
// io.ReaderAt plus a data/hole map, safe for concurrent use. Whole blocks
// are checked against their CRC-32C on every read, partial reads the
// first time a block is read (later partial reads stat catalog.seq
// instead). A reader of a point deleted while it is open gets the right
// bytes or ErrPointDeleted (never ErrCorrupt), never released bytes.
type DiskReader struct {
	repo  *Repo
	point Point
	disk  DiskInfo
	bs    int64
	seq   uint64 // catalog.seq when the reader was opened
	// seqIno is the inode of catalog.seq when last checked: the file is
	// replaced by rename on every change, so a new inode means "look".
	seqIno atomic.Uint64
	n      int64   // blocks of the disk
	m      dataMap // the data blocks: sized by data, not by the disk's size
	pool   sync.Pool

	// callerChecks: the caller checks after every read that the point
	// still exists (CallerChecksDeleted), so partial reads skip the stat.
	callerChecks atomic.Bool

	lastEnd  atomic.Int64 // end of the previous read, to spot sequential readers
	raIssued atomic.Int64 // readahead has been asked for up to here

	mu     sync.Mutex
	files  map[uint32]*os.File
	closed bool
}

// OpenDisk opens a disk of a point for reading. The block map is built once
// here; reads go straight to the delta images.
func (r *Repo) OpenDisk(ctx context.Context, p Point, disk string) (*DiskReader, error) {
	dr, err := r.newDiskReader(p, disk)
	if err != nil {
		return nil, err
	}
	d, n := dr.disk, dr.n
	err = r.view(ctx, func(db *badger.DB) error {
		return db.View(func(txn *badger.Txn) error {
			var dg mapDigest
			err := walkMap(txn, d.ID, diskSpan(p, d), n, func(block uint64, gen uint32, v blockValue) error {
				dr.m.add(int64(block), gen, v.crc)
				dg.add(block, &v.sum)
				return nil
			})
			if err == nil && !dg.matches(d) {
				err = damagedMap(p, d, dg)
			}
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("open disk %s of %s point %s: %w", disk, p.VM, p.ID, err)
	}
	dr.m.seal()
	return dr, nil
}

// newDiskReader is a reader of disk of p with an empty map.
func (r *Repo) newDiskReader(p Point, disk string) (*DiskReader, error) {
	d, ok := p.Disk(disk)
	if !ok {
		names := make([]string, len(p.Disks))
		for i, d := range p.Disks {
			names[i] = d.Name
		}
		return nil, fmt.Errorf("point %s of %s has no disk %q: %w (its disks: %v)", p.ID, p.VM, disk, ErrNotFound, names)
	}
	bs := int64(r.cfg.BlockSize)
	n := (d.Size + bs - 1) / bs
	dr := &DiskReader{repo: r, point: p, disk: d, bs: bs, n: n, files: map[uint32]*os.File{}}
	dr.pool.New = func() any { b := make([]byte, bs); return &b }
	dr.seqIno.Store(r.catalogSeqIno())
	dr.seq = r.CatalogSeq()
	return dr, nil
}

// Size is the disk's logical size in bytes.
func (dr *DiskReader) Size() int64 { return dr.disk.Size }

// Point is the recovery point the reader shows.
func (dr *DiskReader) Point() Point { return dr.point }

// Disk describes the disk.
func (dr *DiskReader) Disk() DiskInfo { return dr.disk }

// Close releases the reader's open delta images.
func (dr *DiskReader) Close() error {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	for _, f := range dr.files {
		f.Close()
	}
	dr.files = nil
	dr.closed = true
	return nil
}

func (dr *DiskReader) file(gen uint32) (*os.File, error) {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	if dr.closed {
		return nil, os.ErrClosed
	}
	if f, ok := dr.files[gen]; ok {
		return f, nil
	}
	f, err := os.Open(dr.repo.imagePath(dr.disk.ID, gen))
	if err != nil {
		return nil, err
	}
	dr.files[gen] = f
	return f, nil
}

// gen is the generation holding block b's data, 0 for a hole.
func (dr *DiskReader) gen(b int64) uint32 {
	g, _ := dr.m.at(b)
	return g
}

func (dr *DiskReader) verified(b int64) bool {
	g, i := dr.m.at(b)
	return g != 0 && dr.m.verified(i)
}

// MapBytes is the memory the reader's block map holds: it grows with the
// disk's data, not with its size.
func (dr *DiskReader) MapBytes() int64 { return dr.m.memory() }

// blockErr describes a failed read of block b. When the point has been
// deleted since the reader was opened, the failure is the deletion's (its
// bytes may have been released), not damage: the error wraps
// ErrPointDeleted and is no BlockError.
func (dr *DiskReader) blockErr(b int64, err error) error {
	if dr.deleted() {
		return fmt.Errorf("VM %s point %s disk %s: read at offset %d: %w", dr.point.VM, dr.point.ID, dr.disk.Name, b*dr.bs, ErrPointDeleted)
	}
	return &BlockError{VM: dr.point.VM, Point: dr.point.ID, Disk: dr.disk.Name, Offset: b * dr.bs, Gen: dr.gen(b), Err: err}
}

// CallerChecksDeleted tells the reader that its caller checks, after
// every ReadAt, whether the point has been deleted, and then refuses the
// bytes read (a FUSE mount does, from its watch of catalog.seq). Partial
// reads of checked blocks then skip their own stat of catalog.seq, which
// would only repeat the caller's check. Whole blocks are still checked
// against their CRC-32C.
func (dr *DiskReader) CallerChecksDeleted() { dr.callerChecks.Store(true) }

// checkNotDeleted fails with ErrPointDeleted when the point has been
// deleted. It costs one stat of catalog.seq while the catalog is unchanged,
// nothing when the caller checks (CallerChecksDeleted).
func (dr *DiskReader) checkNotDeleted(b int64) error {
	if dr.callerChecks.Load() {
		return nil
	}
	ino := dr.repo.catalogSeqIno()
	if old := dr.seqIno.Load(); ino == old {
		return nil
	}
	if dr.deleted() {
		return fmt.Errorf("VM %s point %s disk %s: read at offset %d: %w", dr.point.VM, dr.point.ID, dr.disk.Name, b*dr.bs, ErrPointDeleted)
	}
	dr.seqIno.Store(ino)
	return nil
}

// deleted reports whether the reader's point has been deleted since the
// reader was opened: from catalog.seq, or the catalog when that cannot tell.
func (dr *DiskReader) deleted() bool {
	ref := PointRef{VM: dr.point.VM, Gen: dr.point.Gen}
	if st, err := dr.repo.CatalogState(); err == nil {
		if gone, known := st.Gone(ref, dr.seq); known {
			return gone
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pts, err := dr.repo.Points(ctx, dr.point.VM)
	if err != nil {
		return errors.Is(err, ErrNotFound)
	}
	return !slices.ContainsFunc(pts, func(p Point) bool { return p.Gen == dr.point.Gen })
}

// preadFull reads len(p) bytes at off, zero-filling past the file's end.
func preadFull(f *os.File, p []byte, off int64) error {
	n, err := f.ReadAt(p, off)
	if err == io.EOF {
		clear(p[n:])
		return nil
	}
	return err
}

// loadBlock reads block b whole and checks its checksum.
func (dr *DiskReader) loadBlock(b int64, buf []byte) error {
	gen, i := dr.m.at(b)
	f, err := dr.file(gen)
	if err != nil {
		return dr.blockErr(b, err)
	}
	if err := preadFull(f, buf, b*dr.bs); err != nil {
		return dr.blockErr(b, err)
	}
	if crc32.Checksum(buf, castagnoli) != dr.m.crcs[i] {
		return dr.blockErr(b, ErrCorrupt)
	}
	dr.m.setVerified(i)
	return nil
}

// readRunVerified reads whole blocks b.. of one generation into dst (at
// disk offset pos) with one pread and checks every not yet verified block.
func (dr *DiskReader) readRunVerified(b int64, gen uint32, dst []byte, pos int64) error {
	f, err := dr.file(gen)
	if err != nil {
		return dr.blockErr(b, err)
	}
	if err := preadFull(f, dst, pos); err != nil {
		return dr.blockErr(b, err)
	}
	// Whole blocks are always checked (it costs far less than the read), so
	// bytes released by a concurrent prune never pass as data.
	for i := int64(0); i*dr.bs < int64(len(dst)); i++ {
		blk := b + i
		_, ci := dr.m.at(blk)
		if crc32.Checksum(dst[i*dr.bs:(i+1)*dr.bs], castagnoli) != dr.m.crcs[ci] {
			return dr.blockErr(blk, ErrCorrupt)
		}
		dr.m.setVerified(ci)
	}
	return nil
}

// ReadAt reads the disk's bytes at off. Holes read as zeros.
func (dr *DiskReader) ReadAt(p []byte, off int64) (int, error) {
	size := dr.disk.Size
	if off < 0 {
		return 0, fmt.Errorf("read at %d: %w: negative offset", off, ErrInvalid)
	}
	if off >= size {
		return 0, io.EOF
	}
	end := min(off+int64(len(p)), size)
	dr.readahead(off, end)
	pos := off
	for pos < end {
		b := pos / dr.bs
		in := pos - b*dr.bs
		n := min(dr.bs-in, end-pos)
		dst := p[pos-off : pos-off+n]
		gen := dr.gen(b)
		switch {
		case gen == 0:
			clear(dst)
		case in == 0 && n == dr.bs:
			// Whole blocks: read the run of this image straight into p and
			// check each block's checksum in place, every time.
			for nb := b + 1; pos+n+dr.bs <= end && dr.gen(nb) == gen; nb++ {
				n += dr.bs
			}
			dst = p[pos-off : pos-off+n]
			if err := dr.readRunVerified(b, gen, dst, pos); err != nil {
				return int(pos - off), err
			}
		case dr.verified(b):
			// Part of a block checked before: read just the part.
			f, err := dr.file(gen)
			if err != nil {
				return int(pos - off), dr.blockErr(b, err)
			}
			if err := preadFull(f, dst, pos); err != nil {
				return int(pos - off), dr.blockErr(b, err)
			}
			// No checksum covers a part: make sure the point was not
			// deleted (and the block released) before the read.
			if err := dr.checkNotDeleted(b); err != nil {
				return int(pos - off), err
			}
		default:
			bufp := dr.pool.Get().(*[]byte)
			err := dr.loadBlock(b, *bufp)
			if err == nil {
				copy(dst, (*bufp)[in:in+n])
			}
			dr.pool.Put(bufp)
			if err != nil {
				return int(pos - off), err
			}
		}
		pos += n
	}
	if end-off < int64(len(p)) {
		return int(end - off), io.EOF
	}
	return len(p), nil
}

// readaheadWindow is how far ahead of a sequential reader the delta images
// are asked into the page cache (posix_fadvise WILLNEED, asynchronous).
const readaheadWindow = 16 << 20

// readahead notices sequential reading and asks the kernel to read the
// next window of every delta image the window touches, so that cold reads
// of a point spread over many images overlap instead of waiting in turn.
func (dr *DiskReader) readahead(off, end int64) {
	last := dr.lastEnd.Swap(end)
	if off != last || off == 0 && end < dr.bs {
		return // not sequential
	}
	issued := dr.raIssued.Load()
	if end+readaheadWindow/2 <= issued {
		return
	}
	from := max(issued, end)
	to := min(from+readaheadWindow, dr.disk.Size)
	if from >= to || !dr.raIssued.CompareAndSwap(issued, to) {
		return
	}
	for b := from / dr.bs; b*dr.bs < to; {
		gen := dr.gen(b)
		n := int64(1)
		for b+n < dr.n && (b+n)*dr.bs < to && dr.gen(b+n) == gen {
			n++
		}
		if gen != 0 {
			dr.willNeed(gen, b, n)
		}
		b += n
	}
}

// willNeed asks the kernel to read n blocks from first of delta image gen
// into the page cache (posix_fadvise WILLNEED; errors only lose the hint).
func (dr *DiskReader) willNeed(gen uint32, first, n int64) {
	if f, err := dr.file(gen); err == nil {
		_ = unix.Fadvise(int(f.Fd()), first*dr.bs, n*dr.bs, unix.FADV_WILLNEED)
	}
}

// seekRun clamps off to the disk (ErrNoData at or past its end) and finds
// the first run of data blocks that ends after off's block.
func (dr *DiskReader) seekRun(off int64) (int64, int, error) {
	off = max(off, 0)
	if off >= dr.disk.Size {
		return 0, 0, ErrNoData
	}
	return off, dr.m.search(off / dr.bs), nil
}

// NextData returns the first offset >= off that holds data, or ErrNoData
// (the lseek SEEK_DATA / ENXIO contract).
func (dr *DiskReader) NextData(off int64) (int64, error) {
	off, k, err := dr.seekRun(off)
	if err != nil {
		return 0, err
	}
	if k == len(dr.m.runs) {
		return 0, ErrNoData
	}
	return max(off, dr.m.runs[k].first*dr.bs), nil
}

// NextHole returns the first offset >= off inside a hole; the end of the
// disk counts as a hole (the lseek SEEK_HOLE contract). ErrNoData when off
// is at or past the end.
func (dr *DiskReader) NextHole(off int64) (int64, error) {
	off, k, err := dr.seekRun(off)
	if err != nil {
		return 0, err
	}
	if k == len(dr.m.runs) || dr.m.runs[k].first > off/dr.bs {
		return off, nil
	}
	end := dr.m.runs[k].end()
	for k++; k < len(dr.m.runs) && dr.m.runs[k].first == end; k++ {
		end = dr.m.runs[k].end()
	}
	return min(end*dr.bs, dr.disk.Size), nil
}

// DataExtents lists the disk's data extents in order, merged.
func (dr *DiskReader) DataExtents() []Extent {
	var out []Extent
	for _, r := range dr.m.runs {
		start := r.first * dr.bs
		l := min(int64(r.n)*dr.bs, dr.disk.Size-start)
		if n := len(out); n > 0 && out[n-1].Offset+out[n-1].Length == start {
			out[n-1].Length += l
		} else {
			out = append(out, Extent{Offset: start, Length: l})
		}
	}
	return out
}

// DataBytes is the number of bytes in data extents.
func (dr *DiskReader) DataBytes() int64 {
	var n int64
	for _, r := range dr.m.runs {
		n += min(int64(r.n)*dr.bs, dr.disk.Size-r.first*dr.bs)
	}
	return n
}

// IsCorrupt reports whether err says that stored bytes failed their checksum
// or could not be read from the repository.
func IsCorrupt(err error) bool {
	var be *BlockError
	return errors.As(err, &be)
}
