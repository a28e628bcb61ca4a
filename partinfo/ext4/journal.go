package ext4

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/cairnbackup/cairn/partinfo"
)

// jbd2 on-disk constants (big-endian structures).
const (
	jbdMagic          = 0xC03B3998
	jbdDescriptor     = 1
	jbdCommit         = 2
	jbdSuperV1        = 3
	jbdSuperV2        = 4
	jbdRevoke         = 5
	jbdIncompatRevoke = 0x1
	jbdIncompat64bit  = 0x2
	jbdIncompatCsumV2 = 0x8
	jbdIncompatCsumV3 = 0x10
	jbdIncompatFC     = 0x20
	jbdFlagEscape     = 0x1
	jbdFlagSameUUID   = 0x2
	jbdFlagLastTag    = 0x8
)

// journalCopy is the newest committed copy of one filesystem block.
type journalCopy struct {
	physical uint64 // where the copy lives (a block of the journal inode)
	escape   bool   // the copy's first 4 bytes must be restored to the jbd2 magic
}

// overlay holds the blocks a journal replay would write, applied on every
// read instead of writing them. It is built once in Open and then immutable.
type overlay struct {
	blocks []uint64 // sorted filesystem block numbers
	copies map[uint64]journalCopy
}

// journalTxn is one committed transaction found in the log.
type journalTxn struct {
	seq  uint32
	tags []journalTag
}

type journalTag struct {
	fsBlock uint64
	jBlock  uint64 // logical block inside the journal
	escape  bool
}

// loadJournalOverlay replays (in memory) the committed transactions of the
// internal journal when the filesystem needs recovery. A clean filesystem
// gives a nil overlay.
func (f *FS) loadJournalOverlay(journalIno uint64) (*overlay, error) {
	n, err := f.readInode(journalIno)
	if err != nil {
		return nil, fmt.Errorf("journal inode: %w", err)
	}
	m, err := f.fileMapOf(n)
	if err != nil {
		return nil, fmt.Errorf("journal map: %w", err)
	}
	bs := f.sb.blockSize
	j := &journalReader{f: f, m: m, blocks: uint64(n.size / bs)}
	sb, err := j.block(0)
	if err != nil {
		return nil, err
	}
	be := binary.BigEndian
	if be.Uint32(sb[0:]) != jbdMagic {
		return nil, fmt.Errorf("journal superblock magic: %w", partinfo.ErrCorrupt)
	}
	var incompat uint32
	switch be.Uint32(sb[4:]) {
	case jbdSuperV1:
	case jbdSuperV2:
		incompat = be.Uint32(sb[0x28:])
	default:
		return nil, fmt.Errorf("journal superblock type %d: %w", be.Uint32(sb[4:]), partinfo.ErrCorrupt)
	}
	if int64(be.Uint32(sb[0xC:])) != bs {
		return nil, fmt.Errorf("journal block size %d differs from the filesystem's: %w", be.Uint32(sb[0xC:]), partinfo.ErrCorrupt)
	}
	maxLen := uint64(be.Uint32(sb[0x10:]))
	first := uint64(be.Uint32(sb[0x14:]))
	seq := be.Uint32(sb[0x18:])
	start := uint64(be.Uint32(sb[0x1C:]))
	if start == 0 {
		return nil, nil // nothing to replay
	}
	last := min(maxLen, j.blocks) // one past the last log block
	if incompat&jbdIncompatFC != 0 {
		fc := uint64(be.Uint32(sb[0x54:]))
		if fc == 0 {
			fc = 256
		}
		if fc < last {
			last -= fc
		}
	}
	if first == 0 || first >= last || start < first || start >= last {
		return nil, fmt.Errorf("journal geometry first %d start %d end %d: %w", first, start, last, partinfo.ErrCorrupt)
	}
	j.first, j.last = first, last
	j.tagBytes = 8
	switch {
	case incompat&jbdIncompatCsumV3 != 0:
		j.tagBytes = 16
	case incompat&jbdIncompatCsumV2 != 0:
		j.tagBytes += 2
		fallthrough
	default:
		if incompat&jbdIncompat64bit != 0 {
			j.tagBytes += 4
		}
	}
	if incompat&(jbdIncompatCsumV2|jbdIncompatCsumV3) != 0 {
		j.descTail = 4
	}
	j.is64 = incompat&jbdIncompat64bit != 0

	txns, revoked, err := j.scan(start, seq)
	if err != nil {
		return nil, err
	}
	o := &overlay{copies: make(map[uint64]journalCopy)}
	for _, t := range txns {
		for _, tag := range t.tags {
			if r, ok := revoked[tag.fsBlock]; ok && int32(r-t.seq) >= 0 {
				continue
			}
			if tag.fsBlock >= f.sb.blocksCount {
				return nil, fmt.Errorf("journal tag for block %d beyond the filesystem: %w", tag.fsBlock, partinfo.ErrCorrupt)
			}
			phys, ok := j.physical(tag.jBlock)
			if !ok {
				return nil, fmt.Errorf("journal block %d is not mapped: %w", tag.jBlock, partinfo.ErrCorrupt)
			}
			o.copies[tag.fsBlock] = journalCopy{physical: phys, escape: tag.escape}
		}
	}
	for b := range o.copies {
		o.blocks = append(o.blocks, b)
	}
	sort.Slice(o.blocks, func(a, b int) bool { return o.blocks[a] < o.blocks[b] })
	return o, nil
}

// journalReader reads logical blocks of the journal inode.
type journalReader struct {
	f           *FS
	m           *fileMap
	blocks      uint64
	first, last uint64
	tagBytes    int
	descTail    int
	is64        bool
}

func (j *journalReader) physical(lb uint64) (uint64, bool) {
	i := j.m.find(lb)
	if i >= len(j.m.runs) || j.m.runs[i].logical > lb || j.m.runs[i].unwritten {
		return 0, false
	}
	r := j.m.runs[i]
	return r.physical + (lb - r.logical), true
}

func (j *journalReader) block(lb uint64) ([]byte, error) {
	phys, ok := j.physical(lb)
	if !ok {
		return nil, fmt.Errorf("journal block %d is not mapped: %w", lb, partinfo.ErrCorrupt)
	}
	b := make([]byte, j.f.sb.blockSize)
	if err := j.f.readRaw(b, int64(phys)*j.f.sb.blockSize); err != nil {
		return nil, fmt.Errorf("journal block %d: %w", lb, err)
	}
	return b, nil
}

// next returns the log block after lb, wrapping around the circular log.
func (j *journalReader) next(lb uint64) uint64 {
	if lb+1 >= j.last {
		return j.first
	}
	return lb + 1
}

var errEndOfLog = errors.New("end of log")

// scan walks the log from start, collecting committed transactions and
// the newest revoking sequence of each revoked block. An incomplete final
// transaction is dropped, as the kernel does.
func (j *journalReader) scan(start uint64, seq uint32) ([]journalTxn, map[uint64]uint32, error) {
	be := binary.BigEndian
	var txns []journalTxn
	revoked := map[uint64]uint32{}
	cur := journalTxn{seq: seq}
	var curRevokes []uint64
	pos := start
	for steps := uint64(0); steps < j.last; steps++ {
		b, err := j.block(pos)
		if err != nil {
			return nil, nil, err
		}
		if be.Uint32(b[0:]) != jbdMagic || be.Uint32(b[8:]) != cur.seq {
			break
		}
		switch be.Uint32(b[4:]) {
		case jbdDescriptor:
			tags, err := j.parseTags(b)
			if err != nil {
				return nil, nil, err
			}
			for _, t := range tags {
				pos = j.next(pos)
				steps++
				t.jBlock = pos
				cur.tags = append(cur.tags, t)
			}
		case jbdRevoke:
			blocks, err := j.parseRevoke(b)
			if err != nil {
				return nil, nil, err
			}
			curRevokes = append(curRevokes, blocks...)
		case jbdCommit:
			txns = append(txns, cur)
			for _, r := range curRevokes {
				if old, ok := revoked[r]; !ok || int32(cur.seq-old) > 0 {
					revoked[r] = cur.seq
				}
			}
			cur = journalTxn{seq: cur.seq + 1}
			curRevokes = nil
		default:
			steps = j.last // any other block ends the log
			continue
		}
		pos = j.next(pos)
	}
	return txns, revoked, nil
}

func (j *journalReader) parseTags(b []byte) ([]journalTag, error) {
	be := binary.BigEndian
	var tags []journalTag
	limit := len(b) - j.descTail
	for off := 12; off+j.tagBytes <= limit; {
		t := journalTag{fsBlock: uint64(be.Uint32(b[off:]))}
		var flags uint32
		if j.tagBytes == 16 {
			flags = be.Uint32(b[off+4:])
		} else {
			flags = uint32(be.Uint16(b[off+6:]))
		}
		if j.is64 {
			t.fsBlock |= uint64(be.Uint32(b[off+8:])) << 32
		}
		t.escape = flags&jbdFlagEscape != 0
		tags = append(tags, t)
		off += j.tagBytes
		if flags&jbdFlagSameUUID == 0 {
			off += 16
		}
		if flags&jbdFlagLastTag != 0 {
			return tags, nil
		}
	}
	return tags, nil
}

func (j *journalReader) parseRevoke(b []byte) ([]uint64, error) {
	be := binary.BigEndian
	count := int(be.Uint32(b[12:]))
	if count < 16 || count > len(b) {
		return nil, fmt.Errorf("journal revoke block size %d: %w", count, partinfo.ErrCorrupt)
	}
	rec := 4
	if j.is64 {
		rec = 8
	}
	var out []uint64
	for off := 16; off+rec <= count; off += rec {
		if rec == 8 {
			out = append(out, be.Uint64(b[off:]))
		} else {
			out = append(out, uint64(be.Uint32(b[off:])))
		}
	}
	return out, nil
}

// apply patches p, read from filesystem byte offset off, with the journal
// copies of the blocks it covers.
func (o *overlay) apply(f *FS, p []byte, off int64) error {
	bs := f.sb.blockSize
	end := off + int64(len(p))
	first := uint64(off / bs)
	i := sort.Search(len(o.blocks), func(i int) bool { return o.blocks[i] >= first })
	for ; i < len(o.blocks) && int64(o.blocks[i])*bs < end; i++ {
		blk := o.blocks[i]
		c := o.copies[blk]
		data := make([]byte, bs)
		if err := f.readRaw(data, int64(c.physical)*bs); err != nil {
			return fmt.Errorf("journal copy of block %d: %w", blk, err)
		}
		if c.escape {
			binary.BigEndian.PutUint32(data, jbdMagic)
		}
		bStart := int64(blk) * bs
		lo, hi := max(bStart, off), min(bStart+bs, end)
		copy(p[lo-off:hi-off], data[lo-bStart:hi-bStart])
	}
	return nil
}
