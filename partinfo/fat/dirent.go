package fat

import (
	"encoding/binary"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/partinfo"
)

// Directory entry attribute bits.
const (
	attrReadOnly  = 0x01
	attrVolumeID  = 0x08
	attrDirectory = 0x10
	attrLFN       = 0x0F
)

// entry is one file or directory found in a directory.
type entry struct {
	name string
	raw  rawEntry
}

// rawEntry is a decoded 32-byte short directory entry.
type rawEntry struct {
	ino     uint64 // byte offset of the entry in the volume
	short   [11]byte
	attr    byte
	ntCase  byte
	cluster uint32
	size    uint32
	mtime   time.Time
	ctime   time.Time
	atime   time.Time
}

func (e rawEntry) isDir() bool { return e.attr&attrDirectory != 0 }

// decodeEntry decodes a short directory entry located at volume offset ino.
func decodeEntry(b []byte, ino uint64, fat32 bool) rawEntry {
	var e rawEntry
	e.ino = ino
	copy(e.short[:], b[0:11])
	e.attr = b[11]
	e.ntCase = b[12]
	e.cluster = uint32(binary.LittleEndian.Uint16(b[26:28]))
	if fat32 {
		e.cluster |= uint32(binary.LittleEndian.Uint16(b[20:22])) << 16
	}
	e.size = binary.LittleEndian.Uint32(b[28:32])
	e.mtime = fatTime(binary.LittleEndian.Uint16(b[24:26]), binary.LittleEndian.Uint16(b[22:24]), 0)
	e.ctime = fatTime(binary.LittleEndian.Uint16(b[16:18]), binary.LittleEndian.Uint16(b[14:16]), b[13])
	e.atime = fatTime(binary.LittleEndian.Uint16(b[18:20]), 0, 0)
	return e
}

// fatTime decodes a FAT date and time (local time, reported as UTC).
// tenths is the 10 ms creation-time refinement (0-199).
func fatTime(date, tm uint16, tenths byte) time.Time {
	if date == 0 {
		return time.Time{}
	}
	year := 1980 + int(date>>9)
	month := time.Month((date >> 5) & 0xF)
	day := int(date & 0x1F)
	hour := int(tm >> 11)
	minute := int((tm >> 5) & 0x3F)
	sec := int(tm&0x1F) * 2
	ns := 0
	if tenths < 200 {
		sec += int(tenths) / 100
		ns = int(tenths%100) * 10_000_000
	}
	return time.Date(year, month, day, hour, minute, sec, ns, time.UTC)
}

// shortName renders an 8.3 name, applying the NT lower-case flags.
// Bytes above 0x7F are decoded as Latin-1 (the OEM code page is unknown).
func shortName(s [11]byte, ntCase byte) string {
	if s[0] == 0x05 {
		s[0] = 0xE5
	}
	base := strings.TrimRight(latin1(s[0:8]), " ")
	ext := strings.TrimRight(latin1(s[8:11]), " ")
	if ntCase&0x08 != 0 {
		base = strings.ToLower(base)
	}
	if ntCase&0x10 != 0 {
		ext = strings.ToLower(ext)
	}
	if ext == "" {
		return base
	}
	return base + "." + ext
}

func latin1(b []byte) string {
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return string(r)
}

// lfnChecksum is the checksum of a short name stored in its LFN entries.
func lfnChecksum(s [11]byte) byte {
	var sum byte
	for _, c := range s {
		sum = (sum&1)<<7 + sum>>1 + c
	}
	return sum
}

// lfnState accumulates the long-name entries that precede a short entry.
type lfnState struct {
	units    []uint16
	expected int // sequence number the next LFN entry must carry
	checksum byte
	valid    bool
}

// add consumes one LFN entry.
func (l *lfnState) add(b []byte) {
	seq := int(b[0] & 0x1F)
	if b[0]&0x40 != 0 {
		*l = lfnState{units: make([]uint16, seq*13), expected: seq, checksum: b[13], valid: seq > 0}
	} else if !l.valid || seq != l.expected || b[13] != l.checksum {
		l.valid = false
		return
	}
	if seq == 0 {
		l.valid = false
		return
	}
	base := (seq - 1) * 13
	i := 0
	for _, r := range [][2]int{{1, 11}, {14, 26}, {28, 32}} {
		for o := r[0]; o < r[1]; o += 2 {
			l.units[base+i] = binary.LittleEndian.Uint16(b[o:])
			i++
		}
	}
	l.expected = seq - 1
}

// name returns the long name if it completes and matches short.
func (l *lfnState) name(short [11]byte) (string, bool) {
	if !l.valid || l.expected != 0 || l.checksum != lfnChecksum(short) {
		return "", false
	}
	u := l.units
	for i, c := range u {
		if c == 0 {
			u = u[:i]
			break
		}
	}
	if len(u) == 0 {
		return "", false
	}
	return partinfo.DecodeUTF16Name(u), true
}
