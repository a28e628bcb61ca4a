package ntfs

import (
	"encoding/binary"
	"fmt"
	"strings"
	"sync"

	"github.com/cairnbackup/cairn/partinfo"
	"www.velocidex.com/golang/go-ntfs/parser"
)

// Extended attributes, named and encoded as ntfs-3g shows them with
// -o streams_interface=xattr (ntfs-3g(8), "Alternate Data Streams" and
// "Windows Filename Namespaces"; ntfs-3g's xattrs.c):
//
//   - every named $DATA stream is "user.<stream name>", its value the
//     stream's bytes (read by cairn's own stream reader); listxattr lists
//     these and only these;
//   - getxattr also answers the system.ntfs_* names, which listxattr
//     does not show (as ntfs-3g): system.ntfs_attrib and
//     system.ntfs_attrib_be (the DOS attributes of $STANDARD_INFORMATION,
//     4 bytes, little / big endian, with ntfs-3g's directory and NORMAL
//     adjustments), system.ntfs_acl (the self-relative security
//     descriptor from $Secure:$SDS or the legacy $SECURITY_DESCRIPTOR
//     attribute), system.ntfs_times and system.ntfs_times_be (creation,
//     modification, access and MFT change times in that order, 4 x 8 bytes of 100 ns
//     ticks since 1601), system.ntfs_crtime and system.ntfs_crtime_be
//     (creation time, 8 bytes) and system.ntfs_reparse_data (the reparse
//     buffer, for files that have one).

// Names of the get-only NTFS attributes.
const (
	xattrAttrib      = "system.ntfs_attrib"
	xattrAttribBE    = "system.ntfs_attrib_be"
	xattrACL         = "system.ntfs_acl"
	xattrTimes       = "system.ntfs_times"
	xattrTimesBE     = "system.ntfs_times_be"
	xattrCrtime      = "system.ntfs_crtime"
	xattrCrtimeBE    = "system.ntfs_crtime_be"
	xattrReparseData = "system.ntfs_reparse_data"
	streamPrefix     = "user."
)

// More attribute types and bits.
const (
	attrSecurityDescriptor = 0x50
	fileAttrDirectory      = 0x10
	fileAttrNormal         = 0x80
	secureRecord           = 9
	siV3Size               = 0x48 // $STANDARD_INFORMATION with owner, security and quota ids
)

// namedStream is one named $DATA stream of a record.
type namedStream struct {
	name   string // decoded from the raw UTF-16 units
	goName string // as go-ntfs names it, to select its extents
	size   int64
	res    []byte // resident bytes; nil when non-resident
}

// xinfo is what the attributes of one record are made of.
type xinfo struct {
	isDir   bool
	si      []byte // raw $STANDARD_INFORMATION, up to siV3Size bytes
	reparse []byte
	legacy  []byte // $SECURITY_DESCRIPTOR attribute, when present
	streams []namedStream
}

// xinfo reads the attributes of record ino.
func (f *FS) xinfo(ino uint64) (*xinfo, error) {
	var x *xinfo
	err := f.guard(fmt.Sprintf("read extended attributes of MFT record %d", ino), func() error {
		rec, err := f.recordLocked(ino)
		if err != nil {
			return err
		}
		m, err := f.ctx.GetMFT(int64(ino))
		if err != nil {
			return fmt.Errorf("MFT record %d: %v: %w", ino, err, partinfo.ErrCorrupt)
		}
		x = &xinfo{isDir: rec.isDir, reparse: rec.reparseData}
		seen := map[string]bool{}
		for _, a := range m.EnumerateAttributes(f.ctx) {
			switch a.Type().Value {
			case parser.ATTR_TYPE_STANDARD_INFORMATION:
				if x.si == nil {
					b := make([]byte, siV3Size)
					n, _ := a.Data(f.ctx).ReadAt(b, 0)
					x.si = b[:n]
				}
			case attrSecurityDescriptor:
				if x.legacy == nil {
					r, err := parser.OpenStream(f.ctx, m, attrSecurityDescriptor, parser.WILDCARD_STREAM_ID, "")
					if err != nil {
						return fmt.Errorf("MFT record %d $SECURITY_DESCRIPTOR: %v: %w", ino, err, partinfo.ErrCorrupt)
					}
					b := make([]byte, min(a.DataSize(), partinfo.XattrSizeMax))
					n, _ := r.ReadAt(b, 0)
					x.legacy = b[:n]
				}
			case parser.ATTR_TYPE_DATA:
				goName := a.Name()
				if goName == "" || seen[goName] || (!a.IsResident() && a.Runlist_vcn_start() != 0) {
					continue
				}
				seen[goName] = true
				name, ok := attrNameOf(a)
				if !ok {
					continue
				}
				s := namedStream{name: name, goName: goName, size: a.DataSize()}
				if s.size < 0 {
					return fmt.Errorf("MFT record %d stream %q: negative size: %w", ino, name, partinfo.ErrCorrupt)
				}
				if a.IsResident() {
					s.res = make([]byte, min(s.size, partinfo.XattrSizeMax))
					if n, _ := a.Data(f.ctx).ReadAt(s.res, 0); n != len(s.res) {
						return fmt.Errorf("MFT record %d stream %q: resident data cut short at %d of %d bytes: %w", ino, name, n, s.size, partinfo.ErrCorrupt)
					}
				}
				x.streams = append(x.streams, s)
			}
		}
		if len(x.si) < 0x30 {
			return fmt.Errorf("MFT record %d: $STANDARD_INFORMATION of %d bytes: %w", ino, len(x.si), partinfo.ErrCorrupt)
		}
		return nil
	})
	return x, err
}

// attrNameOf decodes an attribute's name from its raw UTF-16LE units
// (go-ntfs's Name() sniffs a byte order mark).
func attrNameOf(a *parser.NTFS_ATTRIBUTE) (string, bool) {
	var h [12]byte
	if n, _ := a.Reader.ReadAt(h[:], a.Offset); n != len(h) {
		return "", false
	}
	units, off := int(h[9]), int64(binary.LittleEndian.Uint16(h[10:]))
	b := make([]byte, 2*units)
	if n, _ := a.Reader.ReadAt(b, a.Offset+off); n != len(b) {
		return "", false
	}
	return decodeStreamName(b)
}

// decodeStreamName decodes a stream name of raw UTF-16LE units; a name
// that is empty or holds a NUL unit (Linux cannot name it) is refused.
func decodeStreamName(b []byte) (string, bool) {
	if len(b) < 2 || len(b)%2 != 0 {
		return "", false
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
		if u[i] == 0 {
			return "", false
		}
	}
	return partinfo.DecodeUTF16Name(u), true
}

// streamValue reads the bytes of named stream s of record ino, refusing
// a stream larger than a Linux extended attribute can hold.
func (f *FS) streamValue(ino uint64, s namedStream) ([]byte, error) {
	if s.size > partinfo.XattrSizeMax {
		return nil, fmt.Errorf("NTFS stream %q of MFT record %d is %d bytes, more than the %d a Linux extended attribute holds (read it with ntfs-3g -o streams_interface=windows): %w",
			s.name, ino, s.size, partinfo.XattrSizeMax, partinfo.ErrXattrTooLarge)
	}
	if s.res != nil {
		return s.res, nil
	}
	var ds *dataStream
	err := f.guard(fmt.Sprintf("open stream %q of MFT record %d", s.name, ino), func() error {
		m, err := f.ctx.GetMFT(int64(ino))
		if err != nil {
			return fmt.Errorf("MFT record %d: %v: %w", ino, err, partinfo.ErrCorrupt)
		}
		ds, err = f.newNamedStream(ino, m, s.goName)
		return err
	})
	if err != nil {
		return nil, err
	}
	b := make([]byte, min(s.size, ds.size))
	if len(b) < int(s.size) {
		return nil, fmt.Errorf("NTFS stream %q of MFT record %d: %d bytes, its extents say %d: %w", s.name, ino, s.size, ds.size, partinfo.ErrCorrupt)
	}
	if n, err := ds.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("read NTFS stream %q of MFT record %d at %d: %w", s.name, ino, n, err)
	}
	return b, nil
}

var (
	_ partinfo.XattrReader = (*FS)(nil)
	_ partinfo.XattrGetter = (*FS)(nil)
)

// Xattrs returns the named data streams of ino as user.* attributes
// with their bytes (what listxattr shows; the get-only system.ntfs_*
// are left out). Streams beyond partinfo.XattrSizeMax are left out of
// the list and named in an error wrapping partinfo.ErrXattrTooLarge,
// returned together with the streams that fit.
func (f *FS) Xattrs(ino uint64) ([]partinfo.Xattr, error) {
	x, err := f.xinfo(ino)
	if err != nil {
		return nil, err
	}
	out := make([]partinfo.Xattr, 0, len(x.streams))
	var big []string
	for _, s := range x.streams {
		if s.size > partinfo.XattrSizeMax {
			big = append(big, fmt.Sprintf("%q (%d bytes)", s.name, s.size))
			continue
		}
		v, err := f.streamValue(ino, s)
		if err != nil {
			return nil, err
		}
		out = append(out, partinfo.Xattr{Name: streamPrefix + s.name, Value: v})
	}
	if big != nil {
		return out, fmt.Errorf("NTFS streams %s of MFT record %d are larger than the %d bytes a Linux extended attribute holds (read them with ntfs-3g -o streams_interface=windows): %w",
			strings.Join(big, ", "), ino, partinfo.XattrSizeMax, partinfo.ErrXattrTooLarge)
	}
	return out, nil
}

// XattrNames lists the user.* names of ino's named data streams.
func (f *FS) XattrNames(ino uint64) ([]string, error) {
	x, err := f.xinfo(ino)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(x.streams))
	for _, s := range x.streams {
		out = append(out, streamPrefix+s.name)
	}
	return out, nil
}

// Xattr returns one attribute of ino: a user.* stream or a get-only
// system.ntfs_* value.
func (f *FS) Xattr(ino uint64, name string) ([]byte, error) {
	if !strings.HasPrefix(name, streamPrefix) && !strings.HasPrefix(name, "system.ntfs_") {
		// ls -l asks every file for security.selinux and the POSIX ACLs:
		// answer without reading the record.
		return nil, fmt.Errorf("MFT record %d: %s: %w", ino, name, partinfo.ErrNoSuchXattr)
	}
	x, err := f.xinfo(ino)
	if err != nil {
		return nil, err
	}
	le, be := binary.LittleEndian, binary.BigEndian
	noSuch := fmt.Errorf("MFT record %d: %s: %w", ino, name, partinfo.ErrNoSuchXattr)
	switch name {
	case xattrAttrib, xattrAttribBE:
		a := le.Uint32(x.si[0x20:])
		if x.isDir {
			a |= fileAttrDirectory
		} else {
			a &^= fileAttrDirectory
		}
		if a == 0 {
			a = fileAttrNormal
		}
		if name == xattrAttribBE {
			return be.AppendUint32(nil, a), nil
		}
		return le.AppendUint32(nil, a), nil
	case xattrTimes, xattrTimesBE:
		// ntfs-3g's order: creation, modification, access, MFT change
		// ($STANDARD_INFORMATION keeps MFT change before access).
		out := make([]byte, 0, 32)
		for _, off := range []int{0x00, 0x08, 0x18, 0x10} {
			if name == xattrTimes {
				out = le.AppendUint64(out, le.Uint64(x.si[off:]))
			} else {
				out = be.AppendUint64(out, le.Uint64(x.si[off:]))
			}
		}
		return out, nil
	case xattrCrtime:
		return append([]byte(nil), x.si[:8]...), nil
	case xattrCrtimeBE:
		return be.AppendUint64(nil, le.Uint64(x.si)), nil
	case xattrReparseData:
		if len(x.reparse) == 0 {
			return nil, noSuch
		}
		return x.reparse, nil
	case xattrACL:
		return f.securityDescriptor(ino, x)
	}
	if s, ok := strings.CutPrefix(name, streamPrefix); ok {
		for _, st := range x.streams {
			if st.name == s {
				return f.streamValue(ino, st)
			}
		}
	}
	return nil, noSuch
}

// securityDescriptor returns the descriptor of a record as ntfs-3g's
// getsecurityattr finds it: from $Secure:$SDS by the security_id of a
// version 3 $STANDARD_INFORMATION, else the $SECURITY_DESCRIPTOR
// attribute.
func (f *FS) securityDescriptor(ino uint64, x *xinfo) ([]byte, error) {
	var sd []byte
	var where string
	if id := uint32(0); len(x.si) >= siV3Size {
		id = binary.LittleEndian.Uint32(x.si[0x34:])
		if id != 0 {
			idx, err := f.sdsIndex()
			if err != nil {
				return nil, err
			}
			e, ok := idx.entries[id]
			if !ok {
				return nil, fmt.Errorf("MFT record %d: security_id %d is not in $Secure:$SDS: %w", ino, id, partinfo.ErrCorrupt)
			}
			sd = make([]byte, e.n)
			if n, err := idx.s.ReadAt(sd, e.off); err != nil {
				return nil, fmt.Errorf("read security descriptor %d from $Secure:$SDS at %d: %w", id, e.off+int64(n), err)
			}
			where = fmt.Sprintf("security descriptor %d in $Secure:$SDS", id)
		}
	}
	if where == "" {
		if x.legacy == nil {
			return nil, fmt.Errorf("MFT record %d has no security descriptor: %w", ino, partinfo.ErrNoSuchXattr)
		}
		sd, where = x.legacy, "$SECURITY_DESCRIPTOR attribute"
	}
	n, err := sdSize(sd)
	if err != nil {
		return nil, fmt.Errorf("MFT record %d: %s: %v: %w", ino, where, err, partinfo.ErrCorrupt)
	}
	return sd[:n], nil
}

// sdsIdx maps security ids to their descriptors in $Secure:$SDS; it is
// built once per volume on the first system.ntfs_acl request.
type sdsIdx struct {
	once    sync.Once
	err     error
	s       *dataStream
	entries map[uint32]sdsEntry
}

// maxSDSBytes bounds the $SDS stream cairn indexes (it holds each
// distinct descriptor once; even large servers stay far below this).
const maxSDSBytes = 1 << 30

func (f *FS) sdsIndex() (*sdsIdx, error) {
	x := &f.sds
	x.once.Do(func() {
		x.err = f.guard("open $Secure:$SDS", func() error {
			m, err := f.ctx.GetMFT(secureRecord)
			if err != nil {
				return fmt.Errorf("$Secure (MFT record 9): %v: %w", err, partinfo.ErrCorrupt)
			}
			x.s, err = f.newNamedStream(secureRecord, m, "$SDS")
			return err
		})
		if x.err != nil {
			x.err = fmt.Errorf("security descriptors: %w", x.err)
			return
		}
		if x.s.size > maxSDSBytes {
			x.err = fmt.Errorf("$Secure:$SDS of %d bytes is beyond %d: %w", x.s.size, int64(maxSDSBytes), partinfo.ErrCorrupt)
			return
		}
		x.entries = map[uint32]sdsEntry{}
		b := make([]byte, sdsBlock)
		for base := int64(0); base < x.s.size; base += 2 * sdsBlock {
			blk := b[:min(sdsBlock, x.s.size-base)]
			if _, err := x.s.ReadAt(blk, base); err != nil {
				x.err = fmt.Errorf("read $Secure:$SDS at %d: %w", base, err)
				return
			}
			scanSDSBlock(x.entries, blk, base)
		}
	})
	return x, x.err
}
