package partinfo

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
)

// ErrNoXattrs is returned (wrapped) by Xattrs for a filesystem whose reader
// does not expose extended attributes (NTFS and FAT today).
var ErrNoXattrs = errors.New("this filesystem reader does not expose extended attributes")

// Xattr is one extended attribute of an inode, named as a Linux kernel
// mount of the filesystem shows it: "user.x", "trusted.x", "security.selinux",
// "security.capability", "system.posix_acl_access", "system.posix_acl_default".
// POSIX ACL values are in the Linux xattr ACL format (see ACLEntry).
type Xattr struct {
	Name  string
	Value []byte
}

// XattrReader is the optional interface of a Filesystem that holds extended
// attributes. Xattrs lists an inode's attributes in the order a kernel
// mount's listxattr gives them; an inode without any gives an empty list.
type XattrReader interface {
	Xattrs(ino uint64) ([]Xattr, error)
}

// Xattrs returns the extended attributes of inode ino of f, or an error
// wrapping ErrNoXattrs when f's reader has none to give.
func Xattrs(f Filesystem, ino uint64) ([]Xattr, error) {
	if x, ok := f.(XattrReader); ok {
		return x.Xattrs(ino)
	}
	return nil, fmt.Errorf("%s: %w", f.Info().Type, ErrNoXattrs)
}

// POSIX ACL entry tags, the same numbers on Linux, ext4 and XFS.
const (
	ACLUserObj  = 0x01
	ACLUser     = 0x02
	ACLGroupObj = 0x04
	ACLGroup    = 0x08
	ACLMask     = 0x10
	ACLOther    = 0x20
)

// Names of the POSIX ACL extended attributes.
const (
	XattrACLAccess  = "system.posix_acl_access"
	XattrACLDefault = "system.posix_acl_default"
)

// ACLEntry is one entry of a POSIX ACL. ID is meaningful only for
// ACLUser and ACLGroup entries.
type ACLEntry struct {
	Tag  uint16
	Perm uint16
	ID   uint32
}

// aclUndefinedID is the id the kernel writes for entries without one.
const aclUndefinedID = 0xFFFFFFFF

// EncodeACL renders entries in the Linux xattr ACL format (version 2,
// little-endian tag, perm, id; id -1 for entries that carry none), as
// the kernel's posix_acl_to_xattr does.
func EncodeACL(entries []ACLEntry) []byte {
	le := binary.LittleEndian
	out := make([]byte, 4, 4+8*len(entries))
	le.PutUint32(out, 2)
	for _, e := range entries {
		id := e.ID
		if e.Tag != ACLUser && e.Tag != ACLGroup {
			id = aclUndefinedID
		}
		out = le.AppendUint16(out, e.Tag)
		out = le.AppendUint16(out, e.Perm)
		out = le.AppendUint32(out, id)
	}
	return out
}

// ValidACLTag reports whether t is one of the six POSIX ACL tags.
func ValidACLTag(t uint16) bool {
	switch t {
	case ACLUserObj, ACLUser, ACLGroupObj, ACLGroup, ACLMask, ACLOther:
		return true
	}
	return false
}

// XattrFS is implemented by the fs.FS that AsFS returns: the extended
// attributes of a named file, not following a final symbolic link (like
// llistxattr). Its error wraps ErrNoXattrs when the reader has none.
type XattrFS interface {
	fs.FS
	LXattrs(name string) ([]Xattr, error)
}

var _ XattrFS = (*ioFS)(nil)

// LXattrs returns the extended attributes of the named file itself.
func (x *ioFS) LXattrs(name string) ([]Xattr, error) {
	ino, _, err := x.resolve("lxattrs", name, false)
	if err != nil {
		return nil, err
	}
	xs, err := Xattrs(x.f, ino)
	if err != nil {
		// xs may hold the attributes that fit (ErrXattrTooLarge).
		return xs, &fs.PathError{Op: "lxattrs", Path: name, Err: err}
	}
	return xs, nil
}
