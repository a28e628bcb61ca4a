package partinfo

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// Detection is what a filesystem signature says about a volume.
type Detection struct {
	// Type is one of: ext2 ext3 ext4 xfs ntfs fat12 fat16 fat32 exfat
	// btrfs swap lvm2 linux_raid_member bitlocker luks refs iso9660 ldm unknown.
	Type      string
	Version   string // e.g. "LUKS2", swap header version
	Label     string
	UUID      string
	BlockSize int
	Size      int64 // bytes the volume spans (its own claim; 0 when unknown)
	Used      int64 // bytes used, -1 when the superblock does not say
	Free      int64 // bytes free, -1 when the superblock does not say
}

// Detection types that are not filesystems cairn reads.
const (
	TypeUnknown = "unknown"
	TypeLDM     = "ldm"
)

// detector recognises one format in the first bytes of a volume.
type detector func(v *volume) (Detection, bool)

// detectors run in order; formats that overlay a FAT-like boot sector
// (BitLocker, NTFS, exFAT, ReFS) come before FAT.
var detectors = []detector{
	detectLUKS, detectMD, detectLVM2, detectBitLocker, detectNTFS, detectExFAT, detectReFS,
	detectXFS, detectExt, detectBtrfs, detectSwap, detectFAT, detectISO9660,
}

// Detect identifies the filesystem (or container) in r[off:off+size].
// It never fails: unreadable or unrecognised volumes give Type "unknown".
func Detect(r io.ReaderAt, off, size int64) (d Detection) {
	defer func() {
		if p := recover(); p != nil {
			d = Detection{Type: TypeUnknown, Size: size, Used: -1, Free: -1}
		}
	}()
	v := &volume{r: r, off: off, size: size}
	for _, det := range detectors {
		if d, ok := det(v); ok {
			if d.Size == 0 {
				d.Size = size
			}
			return d
		}
	}
	return Detection{Type: TypeUnknown, Size: size, Used: -1, Free: -1}
}

// DetectPartition detects the content of a partition, reporting Windows
// dynamic-disk (LDM) partitions by their type rather than their bytes.
func DetectPartition(r io.ReaderAt, p Partition) Detection {
	if p.MBRType == mbrTypeLDM || p.Type == GUIDLDMMetadata || p.Type == GUIDLDMData {
		return Detection{Type: TypeLDM, Size: p.Size, Used: -1, Free: -1}
	}
	return Detect(r, p.Start, p.Size)
}

// volume reads bytes relative to the start of a volume, returning nil
// past its end or on a read error.
type volume struct {
	r         io.ReaderAt
	off, size int64
}

func (v *volume) at(off int64, n int) []byte {
	if off < 0 || n <= 0 || off+int64(n) > v.size {
		return nil
	}
	b := make([]byte, n)
	if readFull(v.r, b, v.off+off) != nil {
		return nil
	}
	return b
}

func (v *volume) has(off int64, sig string) bool {
	b := v.at(off, len(sig))
	return b != nil && string(b) == sig
}

func le16(b []byte, o int) uint16 { return binary.LittleEndian.Uint16(b[o:]) }
func le32(b []byte, o int) uint32 { return binary.LittleEndian.Uint32(b[o:]) }
func le64(b []byte, o int) uint64 { return binary.LittleEndian.Uint64(b[o:]) }
func be16(b []byte, o int) uint16 { return binary.BigEndian.Uint16(b[o:]) }
func be32(b []byte, o int) uint32 { return binary.BigEndian.Uint32(b[o:]) }
func be64(b []byte, o int) uint64 { return binary.BigEndian.Uint64(b[o:]) }

func unknownSpace(d Detection) Detection { d.Used, d.Free = -1, -1; return d }

func detectLUKS(v *volume) (Detection, bool) {
	b := v.at(0, 512)
	if b == nil || !bytes.Equal(b[0:6], []byte("LUKS\xba\xbe")) {
		return Detection{}, false
	}
	ver := be16(b, 6)
	d := unknownSpace(Detection{Type: "luks", Version: fmt.Sprintf("LUKS%d", ver), UUID: cString(b[168:208])})
	if ver == 2 {
		d.Label = cString(b[24:72])
	}
	return d, true
}

func detectLVM2(v *volume) (Detection, bool) {
	for s := int64(0); s < 4; s++ {
		b := v.at(s*512, 512)
		if b == nil || string(b[0:8]) != "LABELONE" || string(b[24:32]) != "LVM2 001" {
			continue
		}
		d := unknownSpace(Detection{Type: "lvm2"})
		o := int(le32(b, 20))
		if o >= 32 && o+40 <= 512 {
			d.UUID = FormatLVMUUID(string(b[o : o+32]))
			if sz := int64(le64(b, o+32)); sz > 0 {
				d.Size = sz
			}
		}
		return d, true
	}
	return Detection{}, false
}

// FormatLVMUUID inserts the dashes LVM tools print (6-4-4-4-4-4-6) into
// the 32 characters of an LVM2 PV, VG or LV id as stored on disk; any
// other length is returned as it is.
func FormatLVMUUID(s string) string {
	if len(s) != 32 {
		return s
	}
	var out []byte
	for i, n := range []int{6, 4, 4, 4, 4, 4, 6} {
		if i > 0 {
			out = append(out, '-')
		}
		out = append(out, s[:n]...)
		s = s[n:]
	}
	return string(out)
}

// TypeMDMember is a Linux MD RAID member whose superblock (1.1, 1.2)
// comes before its data; 0.90 and 1.0 members show their data's type.
const TypeMDMember = "linux_raid_member"

func detectMD(v *volume) (Detection, bool) {
	for _, off := range []int64{0, 4096} {
		b := v.at(off, 256)
		if b == nil || le32(b, 0) != 0xa92b4efc || le32(b, 4) != 1 {
			continue
		}
		d := unknownSpace(Detection{Type: TypeMDMember, Version: map[int64]string{0: "1.1", 4096: "1.2"}[off],
			UUID: fmt.Sprintf("%x:%x:%x:%x", b[16:20], b[20:24], b[24:28], b[28:32]), Label: cString(b[32:64])})
		return d, true
	}
	return Detection{}, false
}

func detectBitLocker(v *volume) (Detection, bool) {
	if !v.has(3, "-FVE-FS-") {
		return Detection{}, false
	}
	return unknownSpace(Detection{Type: "bitlocker"}), true
}

func detectNTFS(v *volume) (Detection, bool) {
	b := v.at(0, 512)
	if b == nil || string(b[3:11]) != "NTFS    " {
		return Detection{}, false
	}
	bps := int64(le16(b, 11))
	spc := int64(b[13])
	if spc > 0x80 { // negative exponent form for large clusters
		spc = 1 << (256 - spc)
	}
	d := unknownSpace(Detection{Type: "ntfs", UUID: fmt.Sprintf("%016X", le64(b, 72))})
	d.BlockSize = int(bps * spc)
	d.Size = int64(le64(b, 40)) * bps
	if d.Size < 0 {
		d.Size = 0
	}
	return d, true
}

func detectExFAT(v *volume) (Detection, bool) {
	b := v.at(0, 512)
	if b == nil || string(b[3:11]) != "EXFAT   " {
		return Detection{}, false
	}
	bps := b[108]
	spc := b[109]
	if bps < 9 || bps > 12 || spc > 25 {
		return Detection{}, false
	}
	serial := le32(b, 100)
	d := unknownSpace(Detection{Type: "exfat", UUID: fmt.Sprintf("%04X-%04X", serial>>16, serial&0xffff)})
	d.BlockSize = 1 << (bps + spc)
	d.Size = int64(le64(b, 72)) << bps
	return d, true
}

func detectReFS(v *volume) (Detection, bool) {
	b := v.at(0, 32)
	if b == nil || string(b[3:7]) != "ReFS" || string(b[16:20]) != "FSRS" {
		return Detection{}, false
	}
	return unknownSpace(Detection{Type: "refs"}), true
}

func detectXFS(v *volume) (Detection, bool) {
	b := v.at(0, 512)
	if b == nil || string(b[0:4]) != "XFSB" {
		return Detection{}, false
	}
	bs := int64(be32(b, 4))
	if bs < 512 || bs > 65536 {
		return Detection{}, false
	}
	d := Detection{Type: "xfs", BlockSize: int(bs), UUID: formatUUID(b[32:48]), Label: cString(b[108:120])}
	d.Size = int64(be64(b, 8)) * bs
	d.Free = int64(be64(b, 144)) * bs
	d.Used = d.Size - d.Free
	if d.Free < 0 || d.Used < 0 {
		d.Used, d.Free = -1, -1
	}
	return d, true
}

// ext feature bits used to tell ext2, ext3 and ext4 apart.
const (
	extCompatHasJournal = 0x4
	extIncompatExtents  = 0x40
	extIncompat64Bit    = 0x80
	extIncompatFlexBG   = 0x200
	extROCompatMask4    = 0x8 | 0x10 | 0x20 | 0x40 | 0x400 // huge_file gdt_csum dir_nlink extra_isize metadata_csum
)

func detectExt(v *volume) (Detection, bool) {
	b := v.at(1024, 1024)
	if b == nil || le16(b, 56) != 0xEF53 {
		return Detection{}, false
	}
	logbs := le32(b, 24)
	if logbs > 6 {
		return Detection{}, false
	}
	bs := int64(1024) << logbs
	compat, incompat, rocompat := le32(b, 0x5C), le32(b, 0x60), le32(b, 0x64)
	typ := "ext2"
	switch {
	case incompat&(extIncompatExtents|extIncompat64Bit|extIncompatFlexBG) != 0 || rocompat&extROCompatMask4 != 0:
		typ = "ext4"
	case compat&extCompatHasJournal != 0:
		typ = "ext3"
	}
	blocks := uint64(le32(b, 4))
	free := uint64(le32(b, 12))
	if incompat&extIncompat64Bit != 0 {
		blocks |= uint64(le32(b, 0x150)) << 32
		free |= uint64(le32(b, 0x158)) << 32
	}
	d := Detection{Type: typ, BlockSize: int(bs), Label: cString(b[0x78:0x88]), UUID: formatUUID(b[0x68:0x78])}
	d.Size = int64(blocks) * bs
	d.Free = int64(free) * bs
	d.Used = d.Size - d.Free
	if d.Size < 0 || d.Free < 0 || d.Used < 0 {
		d.Size, d.Used, d.Free = 0, -1, -1
	}
	return d, true
}

func detectBtrfs(v *volume) (Detection, bool) {
	b := v.at(0x10000, 0x1000)
	if b == nil || string(b[0x40:0x48]) != "_BHRfS_M" {
		return Detection{}, false
	}
	d := Detection{Type: "btrfs", UUID: formatUUID(b[0x20:0x30]), Label: cString(b[0x12B : 0x12B+256])}
	d.Size = int64(le64(b, 0x70))
	d.Used = int64(le64(b, 0x78))
	d.Free = d.Size - d.Used
	d.BlockSize = int(le32(b, 0x90))
	if d.Size < 0 || d.Used < 0 || d.Free < 0 {
		d.Size, d.Used, d.Free = 0, -1, -1
	}
	return d, true
}

func detectSwap(v *volume) (Detection, bool) {
	for _, page := range []int64{4096, 8192, 16384, 65536} {
		sig := v.at(page-10, 10)
		if sig == nil || (string(sig) != "SWAPSPACE2" && string(sig) != "SWAP-SPACE") {
			continue
		}
		d := unknownSpace(Detection{Type: "swap", BlockSize: int(page)})
		if string(sig) == "SWAP-SPACE" {
			d.Version = "0"
			return d, true
		}
		h := v.at(1024, 48)
		if h != nil {
			d.Version = fmt.Sprint(le32(h, 0))
			if last := int64(le32(h, 4)); last > 0 {
				d.Size = (last + 1) * page
			}
			d.UUID = formatUUID(h[12:28])
			d.Label = cString(h[28:44])
		}
		return d, true
	}
	return Detection{}, false
}

func detectISO9660(v *volume) (Detection, bool) {
	b := v.at(32768, 2048)
	if b == nil || string(b[1:6]) != "CD001" || b[0] != 1 {
		return Detection{}, false
	}
	bs := int64(le16(b, 128))
	d := unknownSpace(Detection{Type: "iso9660", Label: cString(b[40:72]), BlockSize: int(bs)})
	d.Size = int64(le32(b, 80)) * bs
	return d, true
}
