package btrfs

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"

	"github.com/cairnbackup/cairn/partinfo"
)

// Several devices: every device has its own superblock (same fsid, its own
// dev_item: devid and device UUID); chunk items place each logical range
// on stripes, each naming a devid, a device offset and the device's UUID.
// Profiles (the chunk type's bits): single and DUP (every stripe a whole
// copy, DUP on one device), RAID1/RAID1C3/RAID1C4 (every stripe a whole
// copy), RAID0 (stripe_len pieces round-robin over the stripes) and RAID10
// (stripe_len pieces round-robin over groups of sub_stripes mirrors).
// RAID5/6 chunks are refused.

var (
	// ErrMultiDevice marks a device of a btrfs of several devices opened
	// alone (Open): OpenDevices reads them together.
	ErrMultiDevice = errors.New("btrfs filesystem of several devices")
	// ErrMissingDevice marks a read that needs a device not given to
	// OpenDevices.
	ErrMissingDevice = errors.New("btrfs device missing")
	// ErrUnsupported marks structures cairn does not read (RAID5/6
	// chunks).
	ErrUnsupported = errors.New("btrfs feature not supported")
)

const (
	bgRaid0      = 1 << 3
	bgRaid1      = 1 << 4
	bgDup        = 1 << 5
	bgRaid10     = 1 << 6
	bgRaid5      = 1 << 7
	bgRaid6      = 1 << 8
	bgRaid1C3    = 1 << 9
	bgRaid1C4    = 1 << 10
	maxDevices   = 64
	maxStripes   = 256
	devItemOff   = 0xc9
	devUUIDOff   = devItemOff + 66
	superGenOff  = 0x48
	superDevsOff = 0x88
)

// multiDevice is the error of Open on one device of several: the text of
// the partition's ERROR.txt (a partinfo.UnreadableError) and
// ErrMultiDevice.
type multiDevice struct{ *partinfo.UnreadableError }

func (e multiDevice) Unwrap() []error { return []error{e.UnreadableError, ErrMultiDevice} }

func multiDeviceError(sb []byte) error {
	le := binary.LittleEndian
	name, label := formatUUID(sb[0x20:0x30]), cString(sb[0x12b:0x12b+256])
	if label != "" {
		name = label + " (UUID " + name + ")"
	}
	return multiDevice{&partinfo.UnreadableError{
		What: fmt.Sprintf("device %d of the btrfs filesystem %s of %d devices", le.Uint64(sb[devItemOff:]), name, le.Uint64(sb[superDevsOff:])),
		Why: "The filesystem is read from all its devices together under fs/btrfs/<label or UUID>/ of this point " +
			"when they are disks of this VM (fs/btrfs/ERROR.txt says what kept it from being assembled). " +
			"The raw disk images are always available under disks/."}}
}

// device is one device of the filesystem.
type device struct {
	name string
	id   uint64
	uuid [16]byte
	r    partinfo.Region
}

// stripe is one stripe of a chunk.
type stripe struct {
	devid  uint64
	offset uint64
	uuid   [16]byte
}

// chunk maps a logical range to stripes.
type chunk struct {
	logical, length uint64
	typ             uint64
	stripeLen       uint64
	subStripes      int
	stripes         []stripe
}

// readSuper reads and checks the primary superblock of a device.
func readSuper(r partinfo.Region) ([]byte, error) {
	sb := make([]byte, superSize)
	if err := readFull(r.R, sb, r.Off+superOffset); err != nil {
		return nil, fmt.Errorf("btrfs: read superblock: %w", err)
	}
	le := binary.LittleEndian
	if string(sb[0x40:0x48]) != "_BHRfS_M" {
		return nil, corrupt("no superblock magic")
	}
	if ct := le.Uint16(sb[0xc4:]); ct != 0 {
		return nil, fmt.Errorf("btrfs: checksum type %d (only crc32c is read): %w", ct, partinfo.ErrCorrupt)
	}
	if got := crc32.Checksum(sb[0x20:], castagnoli); got != le.Uint32(sb) {
		return nil, corrupt("superblock checksum %08x, superblock says %08x", got, le.Uint32(sb))
	}
	return sb, nil
}

func deviceOf(r partinfo.Region, sb []byte) *device {
	d := &device{name: r.Name, id: binary.LittleEndian.Uint64(sb[devItemOff:]), r: r}
	copy(d.uuid[:], sb[devUUIDOff:devUUIDOff+16])
	return d
}

// Member is a device holding a btrfs superblock, as Scan finds it.
type Member struct {
	Region     partinfo.Region
	FSID       string // the filesystem's UUID
	Label      string
	DevID      uint64
	NumDevices int
	Generation uint64
}

// Group is the devices of one btrfs filesystem of several devices.
type Group struct {
	FSID       string
	Label      string
	NumDevices int
	Members    []Member
}

// Missing is how many of the filesystem's devices are not in the group.
func (g *Group) Missing() int { return max(0, g.NumDevices-len(g.Members)) }

// Open reads the group's filesystem.
func (g *Group) Open() (*FS, error) {
	var rs []partinfo.Region
	for _, m := range g.Members {
		rs = append(rs, m.Region)
	}
	return OpenDevices(rs)
}

// Scan finds the regions holding a device of a btrfs of several devices
// and groups them by filesystem UUID (in the order first seen), each
// group's members in devid order.
// Single-device filesystems and regions without a valid superblock are
// left out.
func Scan(regions []partinfo.Region) []*Group {
	var groups []*Group
	by := map[string]*Group{}
	for _, r := range regions {
		sb, err := readSuper(r)
		if err != nil {
			continue
		}
		le := binary.LittleEndian
		nd := le.Uint64(sb[superDevsOff:])
		if nd < 2 || nd > maxDevices {
			continue
		}
		m := Member{Region: r, FSID: formatUUID(sb[0x20:0x30]), Label: cString(sb[0x12b : 0x12b+256]),
			DevID: le.Uint64(sb[devItemOff:]), NumDevices: int(nd), Generation: le.Uint64(sb[superGenOff:])}
		g := by[m.FSID]
		if g == nil {
			g = &Group{FSID: m.FSID, Label: m.Label, NumDevices: m.NumDevices}
			by[m.FSID] = g
			groups = append(groups, g)
		}
		dup := false
		for _, o := range g.Members {
			dup = dup || o.DevID == m.DevID
		}
		if !dup { // the same device seen twice (a disk and its partition) counts once
			g.Members = append(g.Members, m)
		}
	}
	for _, g := range groups {
		slices.SortStableFunc(g.Members, func(a, b Member) int { return cmp.Compare(a.DevID, b.DevID) })
	}
	return groups
}

// parseChunk reads a CHUNK_ITEM: length, owner, stripe_len, type,
// io_align, io_width, sector_size, num_stripes, sub_stripes, then
// num_stripes stripes (devid, offset, device UUID).
func (f *FS) parseChunk(k key, b []byte) (chunk, int, error) {
	le := binary.LittleEndian
	if k.typ != chunkItem || len(b) < 48 {
		return chunk{}, 0, corrupt("chunk item")
	}
	c := chunk{logical: k.offset, length: le.Uint64(b), stripeLen: le.Uint64(b[16:]), typ: le.Uint64(b[24:]),
		subStripes: int(le.Uint16(b[46:]))}
	ns := int(le.Uint16(b[44:]))
	if ns < 1 || ns > maxStripes || 48+32*ns > len(b) || c.length == 0 || c.logical+c.length < c.logical {
		return chunk{}, 0, corrupt("chunk at %d: %d stripes", k.offset, ns)
	}
	for i := 0; i < ns; i++ {
		s := b[48+32*i:]
		st := stripe{devid: le.Uint64(s), offset: le.Uint64(s[8:])}
		copy(st.uuid[:], s[16:32])
		if st.offset > 1<<62 {
			return chunk{}, 0, corrupt("chunk at %d: stripe at device offset %d", k.offset, st.offset)
		}
		c.stripes = append(c.stripes, st)
	}
	switch {
	case c.typ&(bgRaid5|bgRaid6) != 0:
		return chunk{}, 0, fmt.Errorf("btrfs: chunk at %d is RAID5/6 (%#x), which cairn does not read: %w", k.offset, c.typ, ErrUnsupported)
	case c.typ&(bgRaid0|bgRaid10) != 0:
		if c.stripeLen == 0 || c.stripeLen&(c.stripeLen-1) != 0 || c.stripeLen > 1<<30 {
			return chunk{}, 0, corrupt("chunk at %d: stripe length %d", k.offset, c.stripeLen)
		}
		if c.typ&bgRaid10 != 0 && (c.subStripes < 2 || ns%c.subStripes != 0) {
			return chunk{}, 0, corrupt("RAID10 chunk at %d: %d stripes in groups of %d", k.offset, ns, c.subStripes)
		}
	}
	return c, 48 + 32*ns, nil
}

// piece is where n bytes of a logical range lie: one (device, offset)
// per copy.
type piece struct {
	n      int
	copies []devOff
}

type devOff struct {
	dev *device // nil: the device is missing
	off int64
	id  uint64
}

// mapLogical returns the pieces of [logical, logical+n): one piece per
// stripe_len unit on RAID0/RAID10, one for the whole range otherwise.
func (f *FS) mapLogical(logical uint64, n int) ([]piece, error) {
	var c *chunk
	for i := range f.chunks {
		if logical >= f.chunks[i].logical && logical-f.chunks[i].logical < f.chunks[i].length {
			c = &f.chunks[i]
			break
		}
	}
	if c == nil {
		return nil, corrupt("logical address %d is in no chunk", logical)
	}
	if uint64(n) > c.logical+c.length-logical {
		return nil, corrupt("read of %d bytes at logical %d crosses the end of its chunk", n, logical)
	}
	at := func(s stripe, off uint64, k int) (devOff, error) {
		d := f.devs[s.devid]
		if d != nil && d.uuid != s.uuid {
			return devOff{}, fmt.Errorf("btrfs: %s is device %d with UUID %s, the chunk tree names UUID %s: %w", d.name, s.devid, formatUUID(d.uuid[:]), formatUUID(s.uuid[:]), partinfo.ErrCorrupt)
		}
		o := s.offset + off
		if o < s.offset || o > 1<<62 || (d != nil && int64(o)+int64(k) > d.r.Size) {
			return devOff{}, corrupt("logical %d maps to offset %d of device %d, outside the device", logical, o, s.devid)
		}
		return devOff{dev: d, off: int64(o), id: s.devid}, nil
	}
	rel := logical - c.logical
	if c.typ&(bgRaid0|bgRaid10) == 0 {
		p := piece{n: n}
		for _, s := range c.stripes {
			d, err := at(s, rel, n)
			if err != nil {
				return nil, err
			}
			p.copies = append(p.copies, d)
		}
		return []piece{p}, nil
	}
	sub := 1
	if c.typ&bgRaid10 != 0 {
		sub = c.subStripes
	}
	groups := uint64(len(c.stripes) / sub)
	var out []piece
	for n > 0 {
		nr, in := rel/c.stripeLen, rel%c.stripeLen
		k := int(min(uint64(n), c.stripeLen-in))
		first := int(nr%groups) * sub
		devOffset := nr/groups*c.stripeLen + in
		p := piece{n: k}
		for i := first; i < first+sub; i++ {
			d, err := at(c.stripes[i], devOffset, k)
			if err != nil {
				return nil, err
			}
			p.copies = append(p.copies, d)
		}
		out = append(out, p)
		n -= k
		rel += uint64(k)
	}
	return out, nil
}

// readCopy reads one copy of a piece.
func (d devOff) read(p []byte) error {
	if d.dev == nil {
		return fmt.Errorf("btrfs: device %d is not among the disks given: %w", d.id, ErrMissingDevice)
	}
	return readFull(d.dev.r.R, p, d.dev.r.Off+d.off)
}

// readLogical reads bytes at a logical address, each piece from the
// first copy that reads.
func (f *FS) readLogical(p []byte, logical uint64) error {
	pieces, err := f.mapLogical(logical, len(p))
	if err != nil {
		return err
	}
	for _, pc := range pieces {
		var err error
		for _, c := range pc.copies {
			if err = c.read(p[:pc.n]); err == nil {
				break
			}
		}
		if err != nil {
			return err
		}
		p = p[pc.n:]
	}
	return nil
}

// nodeCopies returns the copies of the tree block at addr (never split:
// btrfs keeps tree blocks inside one stripe).
func (f *FS) nodeCopies(addr uint64) ([]devOff, error) {
	pieces, err := f.mapLogical(addr, int(f.nodesize))
	if err != nil {
		return nil, err
	}
	if len(pieces) != 1 {
		return nil, corrupt("tree block %d crosses a stripe", addr)
	}
	return pieces[0].copies, nil
}
