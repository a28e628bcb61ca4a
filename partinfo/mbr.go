package partinfo

import (
	"encoding/binary"
	"fmt"
	"io"
)

// mbrEntry is one raw 16-byte MBR/EBR partition entry.
type mbrEntry struct {
	index  int
	status byte
	typ    byte
	lba    uint32
	count  uint32
}

// parseMBREntries decodes the four entries of an MBR sector. ok is false
// when the sector carries no valid table (no 55 AA, bad status bytes, or
// no entry at all).
func parseMBREntries(sec []byte) ([]mbrEntry, bool) {
	if len(sec) < 512 || sec[510] != 0x55 || sec[511] != 0xAA {
		return nil, false
	}
	var out []mbrEntry
	for i := 0; i < 4; i++ {
		b := sec[446+16*i : 446+16*i+16]
		e := mbrEntry{
			index:  i,
			status: b[0],
			typ:    b[4],
			lba:    binary.LittleEndian.Uint32(b[8:12]),
			count:  binary.LittleEndian.Uint32(b[12:16]),
		}
		if e.status != 0 && e.status != 0x80 {
			return nil, false
		}
		if e.typ == 0 {
			continue
		}
		if e.count == 0 {
			return nil, false
		}
		out = append(out, e)
	}
	return out, len(out) > 0
}

// maxLogical bounds the EBR chain walk (loops and absurd chains).
const maxLogical = 128

// readMBR builds a Table from MBR primaries and the EBR chain of the
// (first) extended partition.
func readMBR(r io.ReaderAt, size int64, sec []byte, entries []mbrEntry) (*Table, error) {
	t := &Table{Type: TableMBR, SectorSize: sectorSize, DiskSize: size,
		DiskSignature: binary.LittleEndian.Uint32(sec[440:444])}
	var ext *mbrEntry
	for i := range entries {
		e := entries[i]
		p := Partition{
			Number:   e.index + 1,
			Start:    int64(e.lba) * sectorSize,
			Size:     int64(e.count) * sectorSize,
			Type:     fmt.Sprintf("0x%02x", e.typ),
			TypeName: MBRTypeName(e.typ),
			MBRType:  e.typ,
			Bootable: e.status == 0x80,
			Extended: isExtendedType(e.typ),
		}
		if e.typ == mbrTypeLDM {
			t.DynamicDisk = true
		}
		if p.Extended {
			if ext == nil {
				ext = &entries[i]
			} else {
				t.Warnings = append(t.Warnings, fmt.Sprintf("second extended partition p%d ignored", p.Number))
			}
		}
		t.Partitions = append(t.Partitions, p)
	}
	if ext != nil {
		logicals, warns := readEBRChain(r, size, int64(ext.lba), int64(ext.count))
		t.Partitions = append(t.Partitions, logicals...)
		t.Warnings = append(t.Warnings, warns...)
		for _, p := range logicals {
			if p.MBRType == mbrTypeLDM {
				t.DynamicDisk = true
			}
		}
	}
	validate(t)
	return t, nil
}

// readEBRChain follows the linked list of extended boot records. Each EBR
// holds the logical partition (relative to the EBR) and a link to the
// next EBR (relative to the start of the extended partition).
func readEBRChain(r io.ReaderAt, size, extLBA, extCount int64) ([]Partition, []string) {
	var parts []Partition
	var warns []string
	seen := map[int64]bool{}
	ebr := extLBA
	sec := make([]byte, sectorSize)
	for n := 0; ; n++ {
		if n >= maxLogical {
			warns = append(warns, fmt.Sprintf("EBR chain longer than %d entries: stopped", maxLogical))
			break
		}
		if seen[ebr] {
			warns = append(warns, fmt.Sprintf("EBR chain loops back to sector %d: stopped", ebr))
			break
		}
		seen[ebr] = true
		if ebr < extLBA || ebr >= extLBA+extCount || ebr*sectorSize+sectorSize > size {
			warns = append(warns, fmt.Sprintf("EBR at sector %d lies outside the extended partition: chain stopped", ebr))
			break
		}
		if err := readFull(r, sec, ebr*sectorSize); err != nil {
			warns = append(warns, fmt.Sprintf("read EBR at sector %d: %v", ebr, err))
			break
		}
		if sec[510] != 0x55 || sec[511] != 0xAA {
			if n > 0 {
				warns = append(warns, fmt.Sprintf("EBR at sector %d has no boot signature: chain stopped", ebr))
			}
			break
		}
		e0 := sec[446:462]
		e1 := sec[462:478]
		if typ := e0[4]; typ != 0 {
			lba := int64(binary.LittleEndian.Uint32(e0[8:12]))
			cnt := int64(binary.LittleEndian.Uint32(e0[12:16]))
			parts = append(parts, Partition{
				Number:   5 + len(parts),
				Start:    (ebr + lba) * sectorSize,
				Size:     cnt * sectorSize,
				Type:     fmt.Sprintf("0x%02x", typ),
				TypeName: MBRTypeName(typ),
				MBRType:  typ,
				Bootable: e0[0] == 0x80,
				Logical:  true,
			})
			if ebr+lba+cnt > extLBA+extCount {
				parts[len(parts)-1].Problems = append(parts[len(parts)-1].Problems, "extends past the end of its extended partition")
			}
		}
		next := int64(binary.LittleEndian.Uint32(e1[8:12]))
		if e1[4] == 0 || next == 0 {
			break
		}
		ebr = extLBA + next
	}
	return parts, warns
}
