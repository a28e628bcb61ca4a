package lvm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/cairnbackup/cairn/partinfo"
)

// ErrCorrupt marks on-disk LVM structures that fail validation (bad
// checksum, impossible offsets). It wraps partinfo-independent errors;
// callers match it with errors.Is.
var ErrCorrupt = errors.New("LVM structure is corrupt")

const (
	sector        = 512
	labelScan     = 4 // the label is in one of the first four sectors
	mdaHeaderSize = 512
	initialCRC    = 0xf597a6cf
	// maxMetadata bounds one text metadata copy (LVM's default area is
	// 1 MiB; the largest allowed is far below this).
	maxMetadata    = 64 << 20
	rawLocnIgnored = 1
)

var mdaMagic = []byte(" LVM2 x[5A%r0N*>")

// lvmCRC is LVM's checksum: CRC-32 (IEEE, reflected) started from
// initialCRC with no final inversion, continued over several pieces.
func lvmCRC(crc uint32, data []byte) uint32 {
	return ^crc32.Update(^crc, crc32.IEEETable, data)
}

// Device is one place a physical volume may be: a whole disk or a
// partition (Off and Size within R), named for messages ("disk0/p2").
type Device = partinfo.Region

func readFull(r io.ReaderAt, p []byte, off int64) error { return partinfo.ReadFull(r, p, off) }

// area is a disk_locn of the PV header: offset and size in bytes.
type area struct{ Off, Size int64 }

// Label is what the label sector and PV header of a physical volume say.
type Label struct {
	Sector   int64  // sector of the label (0-3)
	UUID     string // PV UUID, 32 characters without dashes
	DevSize  int64
	Data     []area
	Metadata []area
}

// ReadLabel finds and checks the LVM2 label of a device. It returns
// (nil, nil) when the device holds no LVM label.
func ReadLabel(dev Device) (*Label, error) {
	buf := make([]byte, labelScan*sector)
	if err := readFull(dev, buf, 0); err != nil {
		if dev.Size < int64(len(buf)) {
			return nil, nil
		}
		return nil, fmt.Errorf("%s: read label sectors: %w", dev.Name, err)
	}
	for s := 0; s < labelScan; s++ {
		b := buf[s*sector : (s+1)*sector]
		if string(b[0:8]) != "LABELONE" || string(b[24:32]) != "LVM2 001" {
			continue
		}
		le := binary.LittleEndian
		if got := lvmCRC(initialCRC, b[20:]); got != le.Uint32(b[16:]) {
			return nil, fmt.Errorf("%s: PV label in sector %d: checksum %08x, label says %08x: %w", dev.Name, s, got, le.Uint32(b[16:]), ErrCorrupt)
		}
		if int64(le.Uint64(b[8:])) != int64(s) {
			return nil, fmt.Errorf("%s: PV label in sector %d claims sector %d: %w", dev.Name, s, le.Uint64(b[8:]), ErrCorrupt)
		}
		o := int(le.Uint32(b[20:]))
		if o < 32 || o+40 > sector {
			return nil, fmt.Errorf("%s: PV header offset %d: %w", dev.Name, o, ErrCorrupt)
		}
		l := &Label{Sector: int64(s), UUID: string(b[o : o+32]), DevSize: int64(le.Uint64(b[o+32:]))}
		p := o + 40
		list := func() ([]area, error) {
			var out []area
			for {
				if p+16 > sector {
					return nil, fmt.Errorf("%s: PV header area list runs past the label sector: %w", dev.Name, ErrCorrupt)
				}
				off, size := le.Uint64(b[p:]), le.Uint64(b[p+8:])
				p += 16
				if off == 0 {
					return out, nil
				}
				if off > 1<<62 || size > 1<<62 {
					return nil, fmt.Errorf("%s: PV header area %d+%d: %w", dev.Name, off, size, ErrCorrupt)
				}
				out = append(out, area{int64(off), int64(size)})
			}
		}
		var err error
		if l.Data, err = list(); err != nil {
			return nil, err
		}
		if l.Metadata, err = list(); err != nil {
			return nil, err
		}
		return l, nil
	}
	return nil, nil
}

// metadataCopy is one text metadata copy read from a metadata area.
type metadataCopy struct {
	text  []byte
	area  area
	where string
}

// ReadMetadata reads the current text metadata copy of every metadata
// area of a PV. Areas that are damaged give an error in errs; copies
// that pass their checksums are returned.
func readMetadata(dev Device, l *Label) (copies []metadataCopy, errs []error) {
	for i, a := range l.Metadata {
		c, err := readArea(dev, a)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: metadata area %d at %d: %w", dev.Name, i+1, a.Off, err))
			continue
		}
		if c != nil {
			c.where = fmt.Sprintf("%s metadata area %d", dev.Name, i+1)
			copies = append(copies, *c)
		}
	}
	return copies, errs
}

// readArea reads the mda header at a.Off and the text it points at. A
// header with no (or an ignored) location returns nil, nil.
func readArea(dev Device, a area) (*metadataCopy, error) {
	if a.Size < 2*mdaHeaderSize || a.Off < 0 || a.Off+a.Size > dev.Size {
		return nil, fmt.Errorf("area of %d bytes does not fit the device: %w", a.Size, ErrCorrupt)
	}
	h := make([]byte, mdaHeaderSize)
	if err := readFull(dev, h, a.Off); err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	if !bytes.Equal(h[4:20], mdaMagic) {
		return nil, fmt.Errorf("no metadata area header (bad magic): %w", ErrCorrupt)
	}
	if got := lvmCRC(initialCRC, h[4:]); got != le.Uint32(h[0:]) {
		return nil, fmt.Errorf("metadata area header checksum %08x, header says %08x: %w", got, le.Uint32(h[0:]), ErrCorrupt)
	}
	if v := le.Uint32(h[20:]); v != 1 {
		return nil, fmt.Errorf("metadata area header version %d (only 1 is known): %w", v, ErrCorrupt)
	}
	if start := int64(le.Uint64(h[24:])); start != a.Off {
		return nil, fmt.Errorf("metadata area header says it starts at %d: %w", start, ErrCorrupt)
	}
	size := int64(le.Uint64(h[32:]))
	if size != a.Size {
		return nil, fmt.Errorf("metadata area header says size %d, PV header %d: %w", size, a.Size, ErrCorrupt)
	}
	// raw_locn[0] is the committed copy.
	off, n := int64(le.Uint64(h[40:])), int64(le.Uint64(h[48:]))
	sum, flags := le.Uint32(h[56:]), le.Uint32(h[60:])
	if off == 0 || flags&rawLocnIgnored != 0 {
		return nil, nil
	}
	ring := size - mdaHeaderSize
	if off < mdaHeaderSize || off >= size || n <= 0 || n > ring || n > maxMetadata {
		return nil, fmt.Errorf("metadata location %d+%d outside the %d-byte area: %w", off, n, size, ErrCorrupt)
	}
	text := make([]byte, n)
	first := n
	if off+n > size { // the copy wraps round the circular buffer
		first = size - off
	}
	if err := readFull(dev, text[:first], a.Off+off); err != nil {
		return nil, err
	}
	if first < n {
		if err := readFull(dev, text[first:], a.Off+mdaHeaderSize); err != nil {
			return nil, err
		}
	}
	if got := lvmCRC(initialCRC, text); got != sum {
		return nil, fmt.Errorf("metadata text checksum %08x, header says %08x: %w", got, sum, ErrCorrupt)
	}
	return &metadataCopy{text: text, area: a}, nil
}
