package md

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cairnbackup/cairn/partinfo"
)

// ErrCorrupt marks superblocks that fail their checksum or hold
// impossible values.
var ErrCorrupt = errors.New("MD superblock is corrupt")

// ErrUnsupported marks arrays cairn does not read (a level or layout).
var ErrUnsupported = errors.New("MD array layout not supported")

const (
	mdMagic     = 0xa92b4efc
	sector      = 512
	reserved090 = 64 << 10 // 0.90: superblock in the last 64 KiB-aligned 64 KiB
	sb090Size   = 4096
	sb1Size     = 256
	maxDevs     = 384
)

// Levels (the superblock's level field).
const (
	LevelLinear = -1
	Level0      = 0
	Level1      = 1
	Level4      = 4
	Level5      = 5
	Level6      = 6
	Level10     = 10
)

// Device is a whole disk or partition that may be an array member.
type Device = partinfo.Region

func readFull(r io.ReaderAt, p []byte, off int64) error { return partinfo.ReadFull(r, p, off) }

// Role values other than a slot number.
const (
	RoleSpare  = -1
	RoleFaulty = -2
)

// Member is what one device's superblock says.
type Member struct {
	Device    Device
	Version   string // "0.90", "1.0", "1.1", "1.2"
	UUID      string // array UUID
	Name      string // array name (1.x), "" for 0.90
	MDMinor   int    // 0.90: the md device number
	Level     int
	Layout    int
	Chunk     int64 // bytes
	RaidDisks int
	Role      int // slot, RoleSpare or RoleFaulty
	// DataOffset and DataSize are the member's data area in bytes.
	DataOffset int64
	DataSize   int64
	// UsedSize is the component size the array uses (bytes; 0: unknown).
	UsedSize int64
	Events   uint64
	// Degraded roles this superblock records as faulty or missing.
	FailedRoles []int
}

// Examine reads the MD superblock of a device: 1.1 (offset 0), 1.2
// (4 KiB), 0.90 and 1.0 (near the end). It returns nil, nil when the
// device holds none.
func Examine(dev Device) (*Member, error) {
	var firstErr error
	try := func(m *Member, err error) (*Member, bool) {
		if err != nil && firstErr == nil {
			firstErr = err
		}
		return m, m != nil
	}
	if m, ok := try(examine1(dev, 0, "1.1")); ok {
		return m, nil
	}
	if m, ok := try(examine1(dev, 8*sector, "1.2")); ok {
		return m, nil
	}
	if dev.Size >= 2*reserved090 {
		if m, ok := try(examine090(dev)); ok {
			return m, nil
		}
	}
	if dev.Size >= 16*sector {
		off := ((dev.Size/sector - 16) &^ 7) * sector
		if m, ok := try(examine1(dev, off, "1.0")); ok {
			return m, nil
		}
	}
	return nil, firstErr
}

func examine1(dev Device, off int64, version string) (*Member, error) {
	if off+sb1Size > dev.Size {
		return nil, nil
	}
	b := make([]byte, 4096)
	if off+4096 > dev.Size {
		b = b[:dev.Size-off]
	}
	if err := readFull(dev, b, off); err != nil {
		return nil, fmt.Errorf("%s: read superblock %s: %w", dev.Name, version, err)
	}
	le := binary.LittleEndian
	if le.Uint32(b) != mdMagic || le.Uint32(b[4:]) != 1 {
		return nil, nil
	}
	bad := func(what string) (*Member, error) {
		return nil, fmt.Errorf("%s: MD superblock %s: %s: %w", dev.Name, version, what, ErrCorrupt)
	}
	maxDev := int(le.Uint32(b[220:]))
	if maxDev > maxDevs || sb1Size+2*maxDev > len(b) {
		return bad(fmt.Sprintf("max_dev %d", maxDev))
	}
	if got, want := csum1(b[:sb1Size+2*maxDev]), le.Uint32(b[216:]); got != want {
		return bad(fmt.Sprintf("checksum %08x, superblock says %08x", got, want))
	}
	if so := int64(le.Uint64(b[144:])); so*sector != off {
		return bad(fmt.Sprintf("super_offset %d sectors, found at byte %d", so, off))
	}
	m := &Member{Device: dev, Version: version, UUID: formatUUID(b[16:32]), Name: cString(b[32:64]),
		Level: int(int32(le.Uint32(b[72:]))), Layout: int(le.Uint32(b[76:])),
		Chunk: int64(le.Uint32(b[88:])) * sector, RaidDisks: int(le.Uint32(b[92:])),
		DataOffset: int64(le.Uint64(b[128:])) * sector, DataSize: int64(le.Uint64(b[136:])) * sector,
		UsedSize: int64(le.Uint64(b[80:])) * sector, Events: le.Uint64(b[200:])}
	// Harmless for reading: bitmap, recovery offset, bad-block log,
	// replacement, recovery bitmap, raid0 layout.
	if feat := le.Uint32(b[8:]); feat&^(1|2|8|16|128|4096) != 0 {
		return nil, fmt.Errorf("%s: MD superblock %s: feature bits %#x (reshape, journal, ...): %w", dev.Name, version, feat, ErrUnsupported)
	}
	if m.RaidDisks <= 0 || m.RaidDisks > maxDevs || m.DataOffset < 0 || m.DataSize <= 0 || m.UsedSize < 0 ||
		m.DataOffset+m.DataSize > dev.Size || m.Chunk < 0 || m.Chunk > 1<<30 {
		return bad(fmt.Sprintf("raid_disks %d, data %d+%d on a %d-byte device", m.RaidDisks, m.DataOffset, m.DataSize, dev.Size))
	}
	devNumber := int(le.Uint32(b[160:]))
	m.Role = RoleSpare
	if devNumber < maxDev {
		switch r := le.Uint16(b[sb1Size+2*devNumber:]); r {
		case 0xffff:
			m.Role = RoleSpare
		case 0xfffe:
			m.Role = RoleFaulty
		default:
			m.Role = int(r)
		}
	}
	seen := map[int]bool{}
	for i := 0; i < maxDev; i++ {
		r := le.Uint16(b[sb1Size+2*i:])
		if r < 0xfffe {
			seen[int(r)] = true
		}
	}
	for r := 0; r < m.RaidDisks; r++ {
		if !seen[r] {
			m.FailedRoles = append(m.FailedRoles, r)
		}
	}
	return m, nil
}

// csum1 is calc_sb_1_csum: the 32-bit little-endian words summed in 64
// bits with the checksum field as zero, folded once.
func csum1(b []byte) uint32 {
	var sum uint64
	le := binary.LittleEndian
	n := len(b) &^ 3
	for i := 0; i < n; i += 4 {
		if i == 216 {
			continue
		}
		sum += uint64(le.Uint32(b[i:]))
	}
	if len(b)-n == 2 {
		sum += uint64(le.Uint16(b[n:]))
	}
	return uint32(sum&0xffffffff + sum>>32)
}

func examine090(dev Device) (*Member, error) {
	off := dev.Size&^(reserved090-1) - reserved090
	b := make([]byte, sb090Size)
	if err := readFull(dev, b, off); err != nil {
		return nil, fmt.Errorf("%s: read superblock 0.90: %w", dev.Name, err)
	}
	le := binary.LittleEndian
	w := func(i int) uint32 { return le.Uint32(b[4*i:]) }
	if w(0) != mdMagic || w(1) != 0 || w(2) != 90 {
		return nil, nil
	}
	bad := func(what string) (*Member, error) {
		return nil, fmt.Errorf("%s: MD superblock 0.90: %s: %w", dev.Name, what, ErrCorrupt)
	}
	var sum uint64
	for i := 0; i < sb090Size/4; i++ {
		if i != 38 {
			sum += uint64(w(i))
		}
	}
	if got := uint32(sum&0xffffffff + sum>>32); got != w(38) {
		return bad(fmt.Sprintf("checksum %08x, superblock says %08x", got, w(38)))
	}
	uuid := make([]byte, 16)
	be := binary.BigEndian // mdadm prints each word as a number
	be.PutUint32(uuid[0:], w(5))
	be.PutUint32(uuid[4:], w(13))
	be.PutUint32(uuid[8:], w(14))
	be.PutUint32(uuid[12:], w(15))
	m := &Member{Device: dev, Version: "0.90", UUID: formatUUID(uuid), MDMinor: int(w(11)),
		Level: int(int32(w(7))), Layout: int(w(64)), Chunk: int64(w(65)), RaidDisks: int(w(10)),
		DataOffset: 0, DataSize: off, UsedSize: int64(w(8)) * 1024,
		Events: uint64(w(39)) | uint64(w(40))<<32}
	if m.RaidDisks <= 0 || m.RaidDisks > 27 || m.Chunk < 0 || m.Chunk > 1<<30 || m.UsedSize > off {
		return bad(fmt.Sprintf("raid_disks %d, chunk %d, size %d", m.RaidDisks, m.Chunk, m.UsedSize))
	}
	// this_disk descriptor at word 992: number, major, minor, raid_disk, state.
	state := w(992 + 4)
	m.Role = int(w(992 + 3))
	const faulty, active = 1, 2
	switch {
	case state&faulty != 0:
		m.Role = RoleFaulty
	case state&active == 0 || m.Role >= m.RaidDisks:
		m.Role = RoleSpare
	}
	for i := 0; i < m.RaidDisks; i++ {
		d := 128 + 32*i
		if st := w(d + 4); st&faulty != 0 || st&active == 0 {
			m.FailedRoles = append(m.FailedRoles, int(w(d+3)))
		}
	}
	return m, nil
}

func formatUUID(b []byte) string {
	return fmt.Sprintf("%x:%x:%x:%x", b[0:4], b[4:8], b[8:12], b[12:16])
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
