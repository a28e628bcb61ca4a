package btrfs

import (
	"encoding/binary"

	"github.com/cairnbackup/cairn/partinfo"
)

// xattrItem is the key type of an XATTR_ITEM: (inode, 24, crc32c of the
// name). Its data is one or more dir-item records (location key zeroed,
// transid, data_len, name_len, type 8 = BTRFS_FT_XATTR, name, value);
// several names of one hash share an item.
const xattrItem = 24

// ftXattr is the dir-item type of an extended attribute.
const ftXattr = 8

// maxXattrSize bounds one attribute's value (the kernel's XATTR_SIZE_MAX).
const maxXattrSize = 64 << 10

var _ partinfo.XattrReader = (*FS)(nil)

// Xattrs lists an inode's extended attributes in the order a kernel
// mount's listxattr gives them: XATTR_ITEMs in key (name hash) order, the
// records of one item in their order. Values are stored as the kernel
// was given them (POSIX ACLs already in the Linux xattr format). A
// placeholder directory of a snapshot has none.
func (f *FS) Xattrs(ino uint64) ([]partinfo.Xattr, error) {
	_, t, obj, err := f.inode(ino)
	if err != nil {
		return nil, err
	}
	if obj&0xffffffff == emptySubvolDir {
		return nil, nil
	}
	_, datas, err := f.items(t.root, t.level, obj, xattrItem, 0)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	out := []partinfo.Xattr{}
	for _, d := range datas {
		for len(d) > 0 {
			if len(d) < 30 {
				return nil, corrupt("inode %d of tree %d: xattr item of %d bytes", obj, t.id, len(d))
			}
			dl, nl := int(le.Uint16(d[25:])), int(le.Uint16(d[27:]))
			if nl == 0 || 30+nl+dl > len(d) || dl > maxXattrSize || d[29] != ftXattr {
				return nil, corrupt("inode %d of tree %d: xattr record (type %d, name %d bytes, value %d bytes) in %d bytes",
					obj, t.id, d[29], nl, dl, len(d))
			}
			out = append(out, partinfo.Xattr{Name: string(d[30 : 30+nl]), Value: append([]byte{}, d[30+nl:30+nl+dl]...)})
			d = d[30+nl+dl:]
		}
	}
	return out, nil
}
