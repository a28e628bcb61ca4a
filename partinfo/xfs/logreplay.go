package xfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sort"
)

// XFS log recovery, in memory and read-only. A crash-consistent copy of a
// mounted XFS has committed transactions in its log that are not yet in
// place; the kernel replays them at mount. This does the same into an
// overlay of 512-byte sectors that readRaw lays over the image: buffer
// items (metadata blocks, honouring buffer cancel records) and inode items
// (the logged inode core converted from the log's little-endian form, data
// and attribute forks), then recomputes the CRCs of every block it changed.
// Intent items (extent frees, reflink and rmap updates, attribute intents)
// are not replayed: they change free space and sharing, not what a reader
// sees of committed files.

const (
	bbSize          = 512
	logHeaderMagic  = 0xFEEDBABE
	logHeaderCycles = 64 // cycle words in the record header (and 63 per extension)
	logOpHeaderSize = 12

	opStartTrans   = 0x01
	opCommitTrans  = 0x02
	opContinueTran = 0x04
	opWasCont      = 0x08
	opUnmountTrans = 0x20

	liInode = 0x123b
	liBuf   = 0x123c

	blfInodeBuf = 0x1
	blfCancel   = 0x2
	blfDquots   = 0x4 | 0x8 | 0x10
	blfChunk    = 128

	ilogCore   = 0x001
	ilogDData  = 0x002
	ilogDExt   = 0x004
	ilogDBroot = 0x008
	ilogDev    = 0x010
	ilogAData  = 0x040
	ilogAExt   = 0x080
	ilogABroot = 0x100
	ilogDFork  = ilogDData | ilogDExt | ilogDBroot | ilogDev
	ilogAFork  = ilogAData | ilogAExt | ilogABroot

	// maxLogReplay bounds the overlay (512 MiB of sectors) a log can build.
	maxLogReplay = 1 << 20
	// maxRecordBBs bounds the search for the newest record header.
	maxRecordBBs = 2048
)

// errLogClean means the log holds nothing to replay.
var errLogClean = errors.New("log is clean")

// logOverlay holds replayed sectors by 512-byte sector number.
type logOverlay struct {
	sectors map[int64][]byte
	sorted  []int64
	trans   int // transactions replayed
}

// apply lays the overlay over p, read from partition offset off.
func (o *logOverlay) apply(p []byte, off int64) {
	first := off / bbSize
	last := (off + int64(len(p)) - 1) / bbSize
	i := sort.Search(len(o.sorted), func(i int) bool { return o.sorted[i] >= first })
	for ; i < len(o.sorted) && o.sorted[i] <= last; i++ {
		s := o.sorted[i]
		sec := o.sectors[s]
		so := s * bbSize
		lo, hi := max(so, off), min(so+bbSize, off+int64(len(p)))
		copy(p[lo-off:hi-off], sec[lo-so:hi-so])
	}
}

// logRecovery is one replay in progress.
type logRecovery struct {
	x       *xfs
	start   int64 // byte offset of the log in the partition
	nbb     int64 // log size in 512-byte blocks
	overlay *logOverlay
	touched map[[2]int64]bool // replayed buffers (daddr, BBs) needing new CRCs
	inodes  map[int64]bool    // byte offsets of replayed inodes
}

// replayLog replays an internal XFS log that needs recovery.
func (x *xfs) replayLog() (*logOverlay, error) {
	sb := x.sb
	if sb.logStart == 0 || sb.logBlocks == 0 {
		return nil, errLogClean // external log: nothing to read here
	}
	start, ok := x.geo.fsbToByte(sb.logStart)
	if !ok {
		return nil, corruptf("log start block %d outside the filesystem", sb.logStart)
	}
	r := &logRecovery{x: x, start: start, nbb: int64(sb.logBlocks) * int64(sb.blockSize) / bbSize,
		overlay: &logOverlay{sectors: map[int64][]byte{}}, touched: map[[2]int64]bool{}, inodes: map[int64]bool{}}
	head, err := r.findHead()
	if err != nil {
		return nil, err
	}
	last, hdr, err := r.lastHeader(head)
	if err != nil {
		return nil, err
	}
	tail := int64(binary.BigEndian.Uint64(hdr[24:]) & 0xffffffff)
	if tail >= r.nbb {
		return nil, corruptf("log tail block %d outside the %d-block log", tail, r.nbb)
	}
	recs, err := r.records(tail, head)
	if err != nil {
		return nil, err
	}
	// Clean when the newest record, ending at the head, is an unmount
	// record, whatever tail it carries (xlog_check_unmount_rec): the
	// tail LSN is stamped before the unmount record is written, so after
	// a few metadata changes it points at the transactions before it,
	// which unmount has already written back.
	if n := len(recs); n > 0 && recs[n-1].unmount && recs[n-1].blk == last {
		return nil, errLogClean
	}
	trans, err := parseTransactions(recs)
	if err != nil {
		return nil, err
	}
	if len(trans) == 0 {
		return nil, errLogClean
	}
	if err := r.replay(trans); err != nil {
		return nil, err
	}
	r.fixCRCs()
	o := r.overlay
	for s := range o.sectors {
		o.sorted = append(o.sorted, s)
	}
	sort.Slice(o.sorted, func(i, j int) bool { return o.sorted[i] < o.sorted[j] })
	o.trans = len(trans)
	return o, nil
}

// readBB reads n log blocks at log block b (wrapping around the log end).
func (r *logRecovery) readBB(b, n int64) ([]byte, error) {
	out := make([]byte, n*bbSize)
	for done := int64(0); done < n; {
		pos := (b + done) % r.nbb
		k := min(n-done, r.nbb-pos)
		if err := r.x.readDisk(out[done*bbSize:(done+k)*bbSize], r.start+pos*bbSize); err != nil {
			return nil, fmt.Errorf("xfs: read log: %w", err)
		}
		done += k
	}
	return out, nil
}

// cycle returns the cycle number stamped on log block b.
func (r *logRecovery) cycle(b int64) (uint32, error) {
	p, err := r.readBB(b, 1)
	if err != nil {
		return 0, err
	}
	be := binary.BigEndian
	if be.Uint32(p) == logHeaderMagic {
		return be.Uint32(p[4:]), nil
	}
	return be.Uint32(p), nil
}

// findHead finds the first block after the newest write: the log is
// stamped with cycle c up to the head and c-1 after it.
func (r *logRecovery) findHead() (int64, error) {
	first, err := r.cycle(0)
	if err != nil {
		return 0, err
	}
	lastC, err := r.cycle(r.nbb - 1)
	if err != nil {
		return 0, err
	}
	if first == lastC {
		return 0, nil // written exactly to the end
	}
	lo, hi := int64(0), r.nbb-1 // cycle(lo) == first, cycle(hi) == lastC
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		c, err := r.cycle(mid)
		if err != nil {
			return 0, err
		}
		if c == first {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi, nil
}

// lastHeader finds the newest record header before head.
func (r *logRecovery) lastHeader(head int64) (int64, []byte, error) {
	// A record is at most 256 KiB plus its headers: its header lies
	// within that distance of the head.
	for i := int64(1); i <= min(r.nbb, maxRecordBBs); i++ {
		b := ((head-i)%r.nbb + r.nbb) % r.nbb
		p, err := r.readBB(b, 1)
		if err != nil {
			return 0, nil, err
		}
		if binary.BigEndian.Uint32(p) == logHeaderMagic {
			return b, p, nil
		}
	}
	return 0, nil, corruptf("log holds no record header")
}

// logRecord is the unpacked data of one log record.
type logRecord struct {
	blk     int64 // log block of its header
	lsn     uint64
	data    []byte
	ops     int
	unmount bool
}

// records reads the records from tail to head, restoring the first word
// of every data block from the header's cycle data.
func (r *logRecovery) records(tail, head int64) ([]logRecord, error) {
	be := binary.BigEndian
	var out []logRecord
	b := tail
	for budget := r.nbb; b != head; {
		hdr, err := r.readBB(b, 1)
		if err != nil {
			return nil, err
		}
		if be.Uint32(hdr) != logHeaderMagic {
			if len(out) > 0 {
				break // a torn write at the head: stop at the last whole record
			}
			return nil, corruptf("no log record header at tail block %d", b)
		}
		length := int64(be.Uint32(hdr[12:]))
		size := int64(be.Uint32(hdr[320:]))
		hblocks := int64(1)
		if be.Uint32(hdr[8:])&2 != 0 && size > 32768 {
			hblocks = (size + 32767) / 32768
		}
		dblocks := (length + bbSize - 1) / bbSize
		if length < 0 || dblocks+hblocks > r.nbb || dblocks+hblocks > budget {
			return nil, corruptf("log record at block %d: length %d", b, length)
		}
		budget -= dblocks + hblocks
		all, err := r.readBB(b, hblocks+dblocks)
		if err != nil {
			return nil, err
		}
		data := all[hblocks*bbSize:]
		for i := int64(0); i < dblocks; i++ {
			var word []byte
			if i < logHeaderCycles {
				word = hdr[44+4*i : 48+4*i]
			} else {
				j, k := i/logHeaderCycles, i%logHeaderCycles
				if j >= hblocks {
					return nil, corruptf("log record at block %d: cycle data missing", b)
				}
				ext := all[j*bbSize:]
				word = ext[4+4*k : 8+4*k]
			}
			copy(data[i*bbSize:], word)
		}
		rec := logRecord{blk: b, lsn: be.Uint64(hdr[16:]), data: data[:length], ops: int(be.Uint32(hdr[40:]))}
		out = append(out, rec)
		b = (b + hblocks + dblocks) % r.nbb
	}
	// The unmount record of a clean log is one op with the unmount flag.
	if n := len(out); n > 0 {
		d := out[n-1].data
		if out[n-1].ops == 1 && len(d) >= logOpHeaderSize && d[9]&opUnmountTrans != 0 {
			out[n-1].unmount = true
		}
	}
	return out, nil
}

// logTrans is one committed transaction: its items, each a list of regions.
type logTrans struct {
	lsn   uint64
	items [][][]byte
}

type openTrans struct {
	lsn     uint64
	header  bool
	regions [][]byte
}

// parseTransactions reassembles the operations of the records into
// committed transactions, in commit order.
func parseTransactions(recs []logRecord) ([]logTrans, error) {
	be := binary.BigEndian
	open := map[uint32]*openTrans{}
	var done []logTrans
	for _, rec := range recs {
		d := rec.data
		for n := 0; n < rec.ops && len(d) >= logOpHeaderSize; n++ {
			tid, length, flags := be.Uint32(d), int(be.Uint32(d[4:])), d[9]
			if length < 0 || logOpHeaderSize+length > len(d) {
				return nil, corruptf("log op of %d bytes overruns its record", length)
			}
			payload := d[logOpHeaderSize : logOpHeaderSize+length]
			d = d[logOpHeaderSize+length:]
			if flags&opUnmountTrans != 0 {
				continue
			}
			t := open[tid]
			if t == nil {
				// A transaction whose start lies before the tail (or slack
				// space): ignored, as the kernel does.
				if flags&opStartTrans == 0 {
					continue
				}
				t = &openTrans{lsn: rec.lsn}
				open[tid] = t
			}
			if flags&opStartTrans != 0 {
				continue
			}
			if length > 0 {
				switch {
				case flags&opWasCont != 0 && len(t.regions) > 0:
					last := len(t.regions) - 1
					t.regions[last] = append(t.regions[last], payload...)
				case !t.header:
					t.header = true // the transaction header
				default:
					t.regions = append(t.regions, append([]byte(nil), payload...))
				}
			}
			if flags&opCommitTrans != 0 {
				items, err := splitItems(t.regions)
				if err != nil {
					return nil, err
				}
				done = append(done, logTrans{lsn: t.lsn, items: items})
				delete(open, tid)
			}
		}
	}
	return done, nil
}

// splitItems groups regions into log items: each item's first region
// starts with its type and its count of regions.
func splitItems(regions [][]byte) ([][][]byte, error) {
	var items [][][]byte
	for i := 0; i < len(regions); {
		r := regions[i]
		if len(r) < 4 {
			return nil, corruptf("log item format of %d bytes", len(r))
		}
		n := int(binary.LittleEndian.Uint16(r[2:]))
		if n < 1 || i+n > len(regions) {
			return nil, corruptf("log item claims %d regions, %d left", n, len(regions)-i)
		}
		items = append(items, regions[i:i+n])
		i += n
	}
	return items, nil
}

// replay applies buffer and inode items in order, skipping buffers a
// later cancel record says were freed.
func (r *logRecovery) replay(trans []logTrans) error {
	le := binary.LittleEndian
	cancelled := map[int64]int{}
	for _, t := range trans {
		for _, it := range t.items {
			if le.Uint16(it[0]) == liBuf && len(it[0]) >= 16 && le.Uint16(it[0][4:])&blfCancel != 0 {
				cancelled[int64(le.Uint64(it[0][8:]))]++
			}
		}
	}
	for _, t := range trans {
		for _, it := range reorderItems(t.items) {
			switch le.Uint16(it[0]) {
			case liBuf:
				if err := r.replayBuf(it, cancelled); err != nil {
					return err
				}
			case liInode:
				if err := r.replayInode(it, t.lsn, cancelled); err != nil {
					return err
				}
			}
			if len(r.overlay.sectors) > maxLogReplay {
				return corruptf("log replay exceeds %d sectors", maxLogReplay)
			}
		}
	}
	return nil
}

// reorderItems orders one transaction's items as the kernel replays
// them: buffers first, then inode and other items, then inode unlink
// buffers, and buffer cancels last (an item logged in the same checkpoint
// as the cancel of its buffer must still see the buffer cancelled).
func reorderItems(items [][][]byte) [][][]byte {
	le := binary.LittleEndian
	var bufs, others, inodeBufs, cancels [][][]byte
	for _, it := range items {
		if le.Uint16(it[0]) != liBuf || len(it[0]) < 6 {
			others = append(others, it)
			continue
		}
		switch flags := le.Uint16(it[0][4:]); {
		case flags&blfCancel != 0:
			cancels = append(cancels, it)
		case flags&blfInodeBuf != 0:
			inodeBufs = append(inodeBufs, it)
		default:
			bufs = append(bufs, it)
		}
	}
	out := append(bufs, others...)
	out = append(out, inodeBufs...)
	return append(out, cancels...)
}

// read returns n bytes at partition offset off as replayed so far.
func (r *logRecovery) read(off int64, n int) ([]byte, error) {
	p := make([]byte, n)
	if err := r.x.readDisk(p, off); err != nil {
		return nil, err
	}
	o := r.overlay
	for s := off / bbSize; s*bbSize < off+int64(n); s++ {
		if sec, ok := o.sectors[s]; ok {
			so := s * bbSize
			lo, hi := max(so, off), min(so+bbSize, off+int64(n))
			copy(p[lo-off:hi-off], sec[lo-so:hi-so])
		}
	}
	return p, nil
}

// write stores p at partition offset off (sector aligned) in the overlay.
func (r *logRecovery) write(p []byte, off int64) {
	for i := 0; i < len(p); i += bbSize {
		r.overlay.sectors[off/bbSize+int64(i/bbSize)] = append([]byte(nil), p[i:min(i+bbSize, len(p))]...)
	}
}

func (r *logRecovery) replayBuf(it [][]byte, cancelled map[int64]int) error {
	le := binary.LittleEndian
	f := it[0]
	if len(f) < 20 {
		return corruptf("buffer log item of %d bytes", len(f))
	}
	flags, bbs, daddr := le.Uint16(f[4:]), int64(le.Uint16(f[6:])), int64(le.Uint64(f[8:]))
	if flags&blfCancel != 0 {
		cancelled[daddr]--
		return nil
	}
	if cancelled[daddr] > 0 || flags&(blfInodeBuf|blfDquots) != 0 {
		return nil // freed later, or only unlinked-list and quota fields
	}
	words := int(le.Uint32(f[16:]))
	if words < 0 || 20+4*words > len(f) || bbs <= 0 {
		return corruptf("buffer log item bitmap of %d words", words)
	}
	off := daddr * bbSize
	buf, err := r.read(off, int(bbs*bbSize))
	if err != nil {
		return fmt.Errorf("xfs: log replay of block %d: %w", daddr, err)
	}
	bit := func(i int) bool { return i < words*32 && le.Uint32(f[20+4*(i/32):])&(1<<(i%32)) != 0 }
	region := 1
	for i := 0; i < words*32; {
		if !bit(i) {
			i++
			continue
		}
		j := i
		for j < words*32 && bit(j) {
			j++
		}
		if region >= len(it) {
			return corruptf("buffer log item for block %d lacks data", daddr)
		}
		lo := i * blfChunk
		if lo < len(buf) {
			copy(buf[lo:min(j*blfChunk, len(buf))], it[region])
		}
		region++
		i = j
	}
	r.write(buf, off)
	r.touched[[2]int64{daddr, bbs}] = true
	return nil
}

func (r *logRecovery) replayInode(it [][]byte, lsn uint64, cancelled map[int64]int) error {
	le := binary.LittleEndian
	f := it[0]
	var fields uint32
	var blkno int64
	var boffset int
	var rdev []byte
	switch len(f) {
	case 56:
		fields, blkno, boffset, rdev = le.Uint32(f[4:]), int64(le.Uint64(f[40:])), int(int32(le.Uint32(f[52:]))), f[24:28]
	case 52:
		fields, blkno, boffset, rdev = le.Uint32(f[4:]), int64(le.Uint64(f[36:])), int(int32(le.Uint32(f[48:]))), f[20:24]
	default:
		return corruptf("inode log item format of %d bytes", len(f))
	}
	if cancelled[blkno] > 0 {
		return nil
	}
	if len(it) < 2 || fields&ilogCore == 0 {
		return nil
	}
	isize := int(r.x.geo.inodeSize)
	off := blkno*bbSize + int64(boffset)
	if boffset < 0 || off%bbSize+int64(isize) > 1<<20 {
		return corruptf("inode log item at offset %d", boffset)
	}
	dip, err := r.read(off, isize)
	if err != nil {
		return fmt.Errorf("xfs: log replay of inode at %d: %w", off, err)
	}
	if err := logDinodeToDisk(it[1], dip, lsn); err != nil {
		return err
	}
	core := coreSizeV2
	if dip[4] == 3 {
		core = coreSizeV3
	}
	litino := isize - core
	forkoff := int(dip[82]) * 8
	if forkoff > litino {
		return corruptf("logged inode fork offset %d beyond %d", forkoff, litino)
	}
	dsize, asize := litino, 0
	if forkoff != 0 {
		dsize, asize = forkoff, litino-forkoff
	}
	idx := 2
	if fields&ilogDev != 0 {
		copy(dip[core:core+4], []byte{rdev[3], rdev[2], rdev[1], rdev[0]})
	}
	if fields&(ilogDData|ilogDExt|ilogDBroot) != 0 && idx < len(it) {
		if err := copyFork(dip[core:core+dsize], it[idx], fields&ilogDBroot != 0, r.x.sb.v5()); err != nil {
			return err
		}
		idx++
	}
	if fields&ilogAFork != 0 && idx < len(it) && asize > 0 {
		a := core + forkoff
		if err := copyFork(dip[a:a+asize], it[idx], fields&ilogABroot != 0, r.x.sb.v5()); err != nil {
			return err
		}
	}
	// Sector-align the write: read around the inode.
	so := off - off%bbSize
	span, err := r.read(so, int((off-so+int64(isize)+bbSize-1)/bbSize*bbSize))
	if err != nil {
		return err
	}
	copy(span[off-so:], dip)
	r.write(span, so)
	r.inodes[off] = true
	return nil
}

// copyFork places a logged fork into the inode; a btree root is logged as
// an in-memory btree block and stored as the smaller on-disk bmdr form.
func copyFork(dst, src []byte, broot, v5 bool) error {
	if !broot {
		copy(dst, src)
		return nil
	}
	be := binary.BigEndian
	hdr := bmbtHdrV4
	if v5 {
		hdr = bmbtHdrV5
	}
	if len(src) < hdr || len(dst) < 4 {
		return corruptf("logged btree root of %d bytes", len(src))
	}
	level, n := be.Uint16(src[4:]), int(be.Uint16(src[6:]))
	rmax := (len(src) - hdr) / 16
	dmax := (len(dst) - 4) / 16
	if n > rmax || n > dmax {
		return corruptf("logged btree root holds %d records", n)
	}
	be.PutUint16(dst, level)
	be.PutUint16(dst[2:], uint16(n))
	copy(dst[4:4+8*n], src[hdr:hdr+8*n])
	copy(dst[4+8*dmax:4+8*dmax+8*n], src[hdr+8*rmax:hdr+8*rmax+8*n])
	return nil
}

// logDinodeToDisk converts a logged inode core (host little-endian, the
// on-disk layout otherwise) into the big-endian on-disk core of dip.
func logDinodeToDisk(l, dip []byte, lsn uint64) error {
	le, be := binary.LittleEndian, binary.BigEndian
	if len(l) < coreSizeV2 || le.Uint16(l) != inodeMagic {
		return corruptf("logged inode core of %d bytes, magic %#x", len(l), le.Uint16(l))
	}
	version := l[4]
	size := coreSizeV2
	if version >= 3 {
		size = coreSizeV3
		if len(l) < coreSizeV3 {
			return corruptf("logged v3 inode core of %d bytes", len(l))
		}
	}
	if len(dip) < size {
		return corruptf("inode of %d bytes", len(dip))
	}
	copy(dip[:size], l[:size])
	swap16 := func(o int) { be.PutUint16(dip[o:], le.Uint16(l[o:])) }
	swap32 := func(o int) { be.PutUint32(dip[o:], le.Uint32(l[o:])) }
	swap64 := func(o int) { be.PutUint64(dip[o:], le.Uint64(l[o:])) }
	for _, o := range []int{0, 2, 6, 20, 22, 80, 88, 90} {
		swap16(o)
	}
	for _, o := range []int{8, 12, 16, 72, 76, 84, 92, 96} {
		swap32(o)
	}
	for _, o := range []int{56, 64} {
		swap64(o)
	}
	bigtime := false
	if version >= 3 {
		swap64(24)
		swap32(100)
		swap64(104)
		swap64(120)
		swap32(128)
		swap64(152)
		be.PutUint64(dip[112:], lsn)
		bigtime = le.Uint64(l[120:])&diflag2Bigtime != 0
	} else {
		swap16(30)
	}
	stamp := func(o int) {
		if bigtime {
			swap64(o)
		} else {
			swap32(o)
			swap32(o + 4)
		}
	}
	for _, o := range []int{32, 40, 48} {
		stamp(o)
	}
	if version >= 3 {
		stamp(144)
	}
	return nil
}

// fixCRCs recomputes the checksums of every replayed block and inode: the
// log holds them as they were in memory, before the CRC was computed.
func (r *logRecovery) fixCRCs() {
	if !r.x.sb.v5() {
		return
	}
	isize := r.x.geo.inodeSize
	for tb := range r.touched {
		off, n := tb[0]*bbSize, int(tb[1]*bbSize)
		buf, err := r.read(off, n)
		if err != nil {
			continue
		}
		be := binary.BigEndian
		bs := int(r.x.geo.blockSize)
		switch {
		case be.Uint16(buf) == inodeMagic:
			for i := 0; i+int(isize) <= len(buf); i += int(isize) {
				if be.Uint16(buf[i:]) == inodeMagic {
					setCRC(buf[i:i+int(isize)], 100)
				}
			}
		case be.Uint32(buf) == 0x58444233 || be.Uint32(buf) == 0x58444433 || be.Uint32(buf) == 0x58444633: // XDB3 XDD3 XDF3
			setCRC(buf, 4)
		case be.Uint32(buf) == bmapMagicV5:
			setCRC(buf, 64)
		case be.Uint32(buf) == attrRmtMagic || be.Uint32(buf) == 0x58534c4d: // XARM, XSLM
			for i := 0; i+bs <= len(buf); i += bs {
				m := be.Uint32(buf[i:])
				if m == attrRmtMagic || m == 0x58534c4d {
					setCRC(buf[i:i+bs], 12)
				}
			}
		default:
			switch be.Uint16(buf[8:]) {
			case daNodeMagicV5, attrLeafMagicV5, 0x3df1, 0x3dff: // da3 node, attr3 leaf, dir3 leaf1/leafn
				setCRC(buf, 12)
			}
		}
		r.write(buf, off)
	}
	for off := range r.inodes {
		so := off - off%bbSize
		span, err := r.read(so, int((off-so+isize+bbSize-1)/bbSize*bbSize))
		if err != nil {
			continue
		}
		setCRC(span[off-so:off-so+isize], 100)
		r.write(span, so)
	}
}

// setCRC stores the crc32c of b (with its CRC field zeroed) at crcOff.
func setCRC(b []byte, crcOff int) {
	if crcOff+4 > len(b) {
		return
	}
	binary.LittleEndian.PutUint32(b[crcOff:], 0)
	binary.LittleEndian.PutUint32(b[crcOff:], crc32.Checksum(b, castagnoli))
}
