package partinfo

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"unicode/utf16"
)

// gptHeader holds the fields of a GPT header that cairn uses.
type gptHeader struct {
	currentLBA, backupLBA   uint64
	firstUsable, lastUsable uint64
	diskGUID                string
	entriesLBA              uint64
	numEntries, entrySize   uint32
	entriesCRC              uint32
}

// Limits that keep a corrupt header from asking for absurd reads.
const (
	maxGPTEntries   = 4096
	maxGPTEntrySize = 4096
)

// readGPT reads the primary GPT (trying 512- and 4096-byte sectors) and
// falls back to the backup header at the last sector when the primary
// header or its entry array fails validation.
func readGPT(r io.ReaderAt, size int64) (*Table, error) {
	var problems []string
	for _, ss := range []int64{512, 4096} {
		if size < 3*ss {
			continue
		}
		hdr, entries, err := readGPTAt(r, size, ss, 1)
		if err == nil {
			return buildGPTTable(size, ss, hdr, entries, false, nil), nil
		}
		problems = append(problems, fmt.Sprintf("primary GPT (%d-byte sectors): %v", ss, err))
		last := uint64(size/ss) - 1
		bhdr, bentries, berr := readGPTAt(r, size, ss, last)
		if berr == nil {
			return buildGPTTable(size, ss, bhdr, bentries, true, problems), nil
		}
		problems = append(problems, fmt.Sprintf("backup GPT: %v", berr))
	}
	return nil, fmt.Errorf("no valid GPT (%s): %w", strings.Join(problems, "; "), ErrCorrupt)
}

// readGPTAt reads and validates one GPT header at lba and its entries.
func readGPTAt(r io.ReaderAt, size, ss int64, lba uint64) (gptHeader, []byte, error) {
	var h gptHeader
	sec := make([]byte, ss)
	if err := readFull(r, sec, int64(lba)*ss); err != nil {
		return h, nil, err
	}
	if !bytes.Equal(sec[0:8], []byte("EFI PART")) {
		return h, nil, fmt.Errorf("no EFI PART signature at sector %d", lba)
	}
	hsize := binary.LittleEndian.Uint32(sec[12:16])
	if hsize < 92 || int64(hsize) > ss {
		return h, nil, fmt.Errorf("header size %d invalid", hsize)
	}
	want := binary.LittleEndian.Uint32(sec[16:20])
	tmp := append([]byte(nil), sec[:hsize]...)
	copy(tmp[16:20], []byte{0, 0, 0, 0})
	if got := crc32.ChecksumIEEE(tmp); got != want {
		return h, nil, fmt.Errorf("header CRC %08x, want %08x", got, want)
	}
	h.currentLBA = binary.LittleEndian.Uint64(sec[24:32])
	h.backupLBA = binary.LittleEndian.Uint64(sec[32:40])
	h.firstUsable = binary.LittleEndian.Uint64(sec[40:48])
	h.lastUsable = binary.LittleEndian.Uint64(sec[48:56])
	h.diskGUID = formatGUID(sec[56:72])
	h.entriesLBA = binary.LittleEndian.Uint64(sec[72:80])
	h.numEntries = binary.LittleEndian.Uint32(sec[80:84])
	h.entrySize = binary.LittleEndian.Uint32(sec[84:88])
	h.entriesCRC = binary.LittleEndian.Uint32(sec[88:92])
	if h.currentLBA != lba {
		return h, nil, fmt.Errorf("header says it lives at sector %d, found at %d", h.currentLBA, lba)
	}
	if h.numEntries == 0 || h.numEntries > maxGPTEntries || h.entrySize < 128 ||
		h.entrySize > maxGPTEntrySize || h.entrySize%8 != 0 {
		return h, nil, fmt.Errorf("entry array %d x %d bytes invalid", h.numEntries, h.entrySize)
	}
	n := int64(h.numEntries) * int64(h.entrySize)
	if h.entriesLBA > uint64(size/ss) || int64(h.entriesLBA)*ss+n > size {
		return h, nil, fmt.Errorf("entry array at sector %d lies outside the disk", h.entriesLBA)
	}
	entries := make([]byte, n)
	if err := readFull(r, entries, int64(h.entriesLBA)*ss); err != nil {
		return h, nil, fmt.Errorf("read entries: %w", err)
	}
	if got := crc32.ChecksumIEEE(entries); got != h.entriesCRC {
		return h, nil, fmt.Errorf("entry array CRC %08x, want %08x", got, h.entriesCRC)
	}
	return h, entries, nil
}

// buildGPTTable turns validated GPT structures into a Table.
func buildGPTTable(size, ss int64, h gptHeader, entries []byte, backup bool, problems []string) *Table {
	t := &Table{Type: TableGPT, SectorSize: int(ss), DiskSize: size, DiskGUID: h.diskGUID,
		UsedBackupGPT: backup}
	if backup {
		t.Warnings = append(t.Warnings, "primary GPT is corrupt; using the backup GPT at the end of the disk")
	}
	t.Warnings = append(t.Warnings, problems...)
	for i := 0; i < int(h.numEntries); i++ {
		e := entries[i*int(h.entrySize) : (i+1)*int(h.entrySize)]
		typ := formatGUID(e[0:16])
		if typ == guidUnusedEntry {
			continue
		}
		first := binary.LittleEndian.Uint64(e[32:40])
		last := binary.LittleEndian.Uint64(e[40:48])
		attrs := binary.LittleEndian.Uint64(e[48:56])
		p := Partition{
			Number:     i + 1,
			Type:       typ,
			TypeName:   GPTTypeName(typ),
			GUID:       formatGUID(e[16:32]),
			Name:       utf16Name(e[56:128]),
			Attributes: attrs,
			Bootable:   attrs&(1<<2) != 0,
		}
		maxLBA := uint64(size / ss)
		if first > maxLBA || last > maxLBA || last < first {
			p.Problems = append(p.Problems, fmt.Sprintf("sectors %d-%d are invalid for this disk", first, last))
			p.Start = int64(min(first, maxLBA)) * ss
		} else {
			p.Start = int64(first) * ss
			p.Size = int64(last-first+1) * ss
			if first < h.firstUsable || last > h.lastUsable {
				p.Problems = append(p.Problems, fmt.Sprintf("sectors %d-%d lie outside the usable area %d-%d", first, last, h.firstUsable, h.lastUsable))
			}
		}
		if typ == GUIDLDMMetadata || typ == GUIDLDMData {
			t.DynamicDisk = true
		}
		t.Partitions = append(t.Partitions, p)
	}
	validate(t)
	return t
}

// utf16Name decodes a NUL-terminated UTF-16LE name.
func utf16Name(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}
