package ntfs

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/partinfo"
	"www.velocidex.com/golang/go-ntfs/parser"
)

// Attribute types go-ntfs has no constant for.
const (
	attrVolumeName   = 0x60
	attrReparsePoint = 0xC0
)

// Reparse tags cairn shows as symbolic links.
const (
	reparseTagSymlink    = 0xA000000C
	reparseTagMountPoint = 0xA0000003
	reparseTagLxSymlink  = 0xA000001D // WSL symlink: version, then UTF-8 target
)

// unsupportedPrefix starts the link target shown for a file whose reparse
// point cairn cannot translate (see unsupportedReparseTarget).
const unsupportedPrefix = "unsupported-ntfs-reparse-point:"

// reparseNames names the reparse tags seen on Windows volumes whose data
// cairn cannot produce; the name goes into the marker link target.
var reparseNames = map[uint32]string{
	0x80000013: "dedup",       // Data Deduplication: data in the chunk store
	0x80000017: "wof",         // Windows Overlay Filter (compact OS, WIM-backed)
	0x8000001B: "appexeclink", // app execution alias
	0x80000023: "af-unix",     // WSL / Windows AF_UNIX socket
	0x80000024: "lx-fifo",     // WSL FIFO
	0x80000025: "lx-chr",      // WSL character device
	0x80000026: "lx-blk",      // WSL block device
	0x8000000A: "dfs",
	0x80000012: "dfsr",
	0x8000001E: "storage-sync", // Azure File Sync tiered file
	0xC0000004: "hsm",
	0x80000005: "driver-extender",
	0x80000006: "hsm2",
	0x80000007: "sis", // Single Instance Storage
}

// unsupportedReparseTarget is the link target of a file (not a directory)
// carrying a reparse tag other than symlink, junction or WSL symlink.
// Such files (deduplicated, cloud placeholders, WOF-compressed, ...) keep
// their real data outside the unnamed $DATA stream, so showing that
// stream as the file's content would hand out wrong bytes silently.
// Instead they show as symbolic links to a target that cannot exist and
// says what the file is, like ntfs-3g's unsupported reparse points:
// "unsupported-ntfs-reparse-point:0x80000013:dedup". Cloud files
// (0x9000xxxA, OneDrive and other sync engines) are named "cloud".
func unsupportedReparseTarget(tag uint32) string {
	name, ok := reparseNames[tag]
	switch {
	case ok:
	case tag&0xFFFF0FFF == 0x9000001A:
		name = "cloud"
	default:
		name = "unknown"
	}
	return fmt.Sprintf("%s0x%08x:%s", unsupportedPrefix, tag, name)
}

// $STANDARD_INFORMATION file attribute bits.
const (
	fileAttrSystem = 0x4
)

// fileName is one $FILE_NAME attribute: a link from a directory.
type fileName struct {
	parent uint64
	name   string
	dos    bool // DOS 8.3-only name (hidden)
}

// record is what cairn needs of one MFT record.
type record struct {
	ino          uint64
	isDir        bool
	names        []fileName
	mtime, atime time.Time
	ctime        time.Time
	siFlags      uint64
	hasData      bool
	resident     bool  // unnamed $DATA is resident
	size         int64 // unnamed $DATA size
	allocated    int64
	reparseTag   uint32
	reparseData  []byte
	linkTarget   string // symbolic link or junction target ("" when not a link)
}

func (r *record) isLink() bool { return r.linkTarget != "" }

// record reads MFT record ino; the caller must hold f.mu or call from guard.
func (f *FS) record(ino uint64) (*record, error) {
	var rec *record
	err := f.guard(fmt.Sprintf("read MFT record %d", ino), func() error {
		var err error
		rec, err = f.recordLocked(ino)
		return err
	})
	return rec, err
}

func (f *FS) recordLocked(ino uint64) (*record, error) {
	if ino > 1<<40 {
		return nil, fmt.Errorf("MFT record %d: %w", ino, fs.ErrNotExist)
	}
	m, err := f.ctx.GetMFT(int64(ino))
	if err != nil {
		return nil, fmt.Errorf("MFT record %d: %v: %w", ino, err, partinfo.ErrCorrupt)
	}
	flags := m.Flags()
	if !flags.IsSet("ALLOCATED") {
		return nil, fmt.Errorf("MFT record %d is not in use: %w", ino, fs.ErrNotExist)
	}
	if m.Base_record_reference()&0xffffffffffff != 0 {
		return nil, fmt.Errorf("MFT record %d is an extension record: %w", ino, fs.ErrNotExist)
	}
	rec := &record{ino: ino, isDir: flags.IsSet("DIRECTORY")}
	haveSI := false
	for _, a := range m.EnumerateAttributes(f.ctx) {
		switch a.Type().Value {
		case parser.ATTR_TYPE_STANDARD_INFORMATION:
			if haveSI {
				continue
			}
			haveSI = true
			var si [0x24]byte
			if n, _ := a.Data(f.ctx).ReadAt(si[:], 0); n < len(si) {
				return nil, fmt.Errorf("MFT record %d: $STANDARD_INFORMATION of %d bytes: %w", ino, n, partinfo.ErrCorrupt)
			}
			le := binary.LittleEndian
			rec.mtime = filetime(le.Uint64(si[0x08:]))
			rec.ctime = filetime(le.Uint64(si[0x10:]))
			rec.atime = filetime(le.Uint64(si[0x18:]))
			rec.siFlags = uint64(le.Uint32(si[0x20:]))
		case parser.ATTR_TYPE_FILE_NAME:
			fn := f.ctx.Profile.FILE_NAME(a.Data(f.ctx), 0)
			rec.names = append(rec.names, fileName{
				parent: fn.MftReference(),
				name:   fileNameOf(fn),
				dos:    fn.NameType().Value == 2,
			})
		case parser.ATTR_TYPE_DATA:
			if a.Name() != "" || (!a.IsResident() && a.Runlist_vcn_start() != 0) || rec.hasData {
				continue
			}
			rec.hasData = true
			rec.size = a.DataSize()
			if a.IsResident() {
				rec.resident = true
				rec.allocated = rec.size
			} else {
				rec.allocated = int64(a.Allocated_size())
			}
		case parser.ATTR_TYPE_INDEX_ROOT:
			if a.Name() == "$I30" {
				rec.isDir = true
			}
		case attrReparsePoint:
			b := make([]byte, min(a.DataSize(), 16<<10))
			n, _ := a.Data(f.ctx).ReadAt(b, 0)
			rec.reparseData = b[:n]
			if n >= 4 {
				rec.reparseTag = binary.LittleEndian.Uint32(b)
			}
		}
	}
	if rec.size < 0 {
		return nil, fmt.Errorf("MFT record %d: negative size: %w", ino, partinfo.ErrCorrupt)
	}
	rec.linkTarget = reparseTarget(rec.reparseTag, rec.reparseData)
	if rec.linkTarget == "" && rec.reparseTag != 0 && !rec.isDir {
		rec.linkTarget = unsupportedReparseTarget(rec.reparseTag)
	}
	if rec.linkTarget == "" && !rec.isDir && rec.siFlags&fileAttrSystem != 0 && rec.size > 8 && rec.size < 4096 {
		rec.linkTarget = f.interixTarget(m, rec.size)
	}
	return rec, nil
}

// reparseTarget decodes a symlink or junction reparse buffer; "" otherwise.
func reparseTarget(tag uint32, b []byte) string {
	var hdr int
	switch tag {
	case reparseTagLxSymlink:
		if len(b) <= 12 {
			return ""
		}
		n := min(int(binary.LittleEndian.Uint16(b[4:]))+8, len(b))
		if n <= 12 {
			return ""
		}
		return string(b[12:n])
	case reparseTagSymlink:
		hdr = 20 // tag, length, reserved, 4 name fields, flags
	case reparseTagMountPoint:
		hdr = 16
	default:
		return ""
	}
	if len(b) < hdr {
		return ""
	}
	subOff, subLen := int(binary.LittleEndian.Uint16(b[8:])), int(binary.LittleEndian.Uint16(b[10:]))
	prOff, prLen := int(binary.LittleEndian.Uint16(b[12:])), int(binary.LittleEndian.Uint16(b[14:]))
	buf := b[hdr:]
	pick := func(off, n int) string {
		if off < 0 || n <= 0 || off+n > len(buf) {
			return ""
		}
		return decodeUTF16(buf[off : off+n])
	}
	t := pick(prOff, prLen)
	if t == "" {
		t = strings.TrimPrefix(pick(subOff, subLen), `\??\`)
	}
	return strings.ReplaceAll(t, `\`, "/")
}

// interixTarget reads an Interix-style symlink (SFU/ntfs-3g legacy): a
// system file whose data is "IntxLNK\1" followed by the UTF-16 target.
func (f *FS) interixTarget(m *parser.MFT_ENTRY, size int64) string {
	r, err := parser.OpenStream(f.ctx, m, parser.ATTR_TYPE_DATA, parser.WILDCARD_STREAM_ID, "")
	if err != nil {
		return ""
	}
	b := make([]byte, size)
	n, _ := r.ReadAt(b, 0)
	b = b[:n]
	if len(b) < 10 || string(b[:8]) != "IntxLNK\x01" {
		return ""
	}
	return decodeUTF16(b[8:])
}

// decodeUTF16 decodes UTF-16LE bytes up to the first NUL, with no byte
// order sniffing (see partinfo.DecodeUTF16Name).
func decodeUTF16(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		u = append(u, binary.LittleEndian.Uint16(b[i:]))
	}
	return partinfo.DecodeUTF16Name(u)
}

// fileNameOf decodes the name of a $FILE_NAME (attribute or index key)
// from its raw UTF-16LE units. go-ntfs's Name() sniffs a byte order mark
// and decodes a name starting with U+FEFF as big-endian.
func fileNameOf(fn *parser.FILE_NAME) string {
	var l [1]byte
	if n, _ := fn.Reader.ReadAt(l[:], fn.Offset+fn.Profile.Off_FILE_NAME__length_of_name); n != 1 {
		return ""
	}
	b := make([]byte, 2*int(l[0]))
	n, _ := fn.Reader.ReadAt(b, fn.Offset+fn.Profile.Off_FILE_NAME_name)
	u := make([]uint16, 0, n/2)
	for i := 0; i+1 < n; i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			return "" // a NUL inside a name is corruption
		}
		u = append(u, c)
	}
	return partinfo.DecodeUTF16Name(u)
}

// filetimeEpoch is 1601-01-01 in Unix seconds.
const filetimeEpoch = -11644473600

// filetime converts an NTFS time (100 ns ticks since 1601-01-01 UTC) in
// seconds and ticks, so every representable value (1601 to 60056)
// converts exactly; one nanosecond count since 1970 would overflow
// outside 1678-2262.
func filetime(v uint64) time.Time {
	return time.Unix(int64(v/1e7)+filetimeEpoch, int64(v%1e7)*100).UTC()
}

// attr converts a record to partinfo.Attr with synthesised modes.
func (r *record) attr() partinfo.Attr {
	a := partinfo.Attr{Ino: r.ino, Mtime: r.mtime, Atime: r.atime, Ctime: r.ctime}
	for _, n := range r.names {
		if !n.dos {
			a.Nlink++
		}
	}
	if a.Nlink == 0 {
		a.Nlink = 1
	}
	switch {
	case r.isLink():
		a.Mode = fs.ModeSymlink | 0o777
		a.Size = int64(len(r.linkTarget))
	case r.isDir:
		a.Mode = fs.ModeDir | 0o555
		a.Size = 4096
	default:
		a.Mode = 0o444
		a.Size = r.size
		a.Blocks = r.allocated / 512
	}
	return a
}
