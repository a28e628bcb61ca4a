package guest

import (
	"context"
	"errors"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/cairnbackup/cairn/partinfo"
)

// Extended attributes of guest files: listxattr and getxattr answer what
// the guest filesystem holds, named and encoded as a kernel mount of it
// shows them (NTFS: as ntfs-3g -o streams_interface=xattr, through
// partinfo.XattrGetter, whose get-only names listxattr does not show).
// Filesystems whose reader has none (FAT) answer ENOTSUP.

var (
	_ gofs.NodeGetxattrer  = (*guestNode)(nil)
	_ gofs.NodeListxattrer = (*guestNode)(nil)
	_ gofs.NodeGetxattrer  = (*volumeDir)(nil)
	_ gofs.NodeListxattrer = (*volumeDir)(nil)
)

// xattrCache is a node's attribute list, read once: `ls -l` asks two or
// three names of every entry (security.selinux, system.posix_acl_access,
// ...), nearly always absent, and a committed point never changes.
// A failed read (EIO) is not kept.
type xattrCache struct {
	mu     sync.Mutex
	loaded bool
	xs     []partinfo.Xattr
	errno  syscall.Errno
}

func (n *guestNode) xattrs() ([]partinfo.Xattr, syscall.Errno) {
	n.xc.mu.Lock()
	defer n.xc.mu.Unlock()
	if n.xc.loaded {
		return n.xc.xs, n.xc.errno
	}
	xs, errno := n.readXattrs()
	if errno == 0 || errno == syscall.ENOTSUP {
		n.xc.xs, n.xc.errno, n.xc.loaded = xs, errno, true
	}
	return xs, errno
}

func (n *guestNode) readXattrs() ([]partinfo.Xattr, syscall.Errno) {
	st, errno := n.use()
	if errno != 0 {
		return nil, errno
	}
	defer n.vol.release(st)
	xs, err := partinfo.Xattrs(st.fs, n.ino)
	if errors.Is(err, partinfo.ErrNoXattrs) {
		return nil, syscall.ENOTSUP
	}
	if err != nil {
		return nil, n.fail("xattrs", err)
	}
	return xs, 0
}

// Getxattr copies one attribute's value into dest (its size when dest is
// empty, ERANGE when too small, ENODATA when the file has no such name).
func (n *guestNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	st, errno := n.use()
	if errno != 0 {
		return 0, errno
	}
	defer n.vol.release(st)
	if g, ok := partinfo.XattrGetterOf(st.fs); ok {
		v, err := g.Xattr(n.ino, attr)
		switch {
		case errors.Is(err, partinfo.ErrNoSuchXattr):
			return 0, syscall.ENODATA
		case errors.Is(err, partinfo.ErrXattrTooLarge):
			return 0, syscall.E2BIG
		case err != nil:
			return 0, n.fail("xattr", err)
		case len(dest) < len(v):
			return uint32(len(v)), syscall.ERANGE
		}
		return uint32(copy(dest, v)), 0
	}
	xs, errno := n.xattrs()
	if errno != 0 {
		return 0, errno
	}
	for _, x := range xs {
		if x.Name != attr {
			continue
		}
		if len(dest) < len(x.Value) {
			return uint32(len(x.Value)), syscall.ERANGE
		}
		return uint32(copy(dest, x.Value)), 0
	}
	return 0, syscall.ENODATA
}

// Listxattr fills dest with the NUL-terminated names.
func (n *guestNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	var names []string
	st, errno := n.use()
	if errno != 0 {
		return 0, errno
	}
	defer n.vol.release(st)
	if g, ok := partinfo.XattrGetterOf(st.fs); ok {
		var err error
		if names, err = g.XattrNames(n.ino); err != nil {
			return 0, n.fail("xattr names", err)
		}
	} else {
		xs, errno := n.xattrs()
		if errno != 0 {
			return 0, errno
		}
		for _, x := range xs {
			names = append(names, x.Name)
		}
	}
	size := 0
	for _, name := range names {
		size += len(name) + 1
	}
	if len(dest) < size {
		return uint32(size), syscall.ERANGE
	}
	off := 0
	for _, name := range names {
		off += copy(dest[off:], name)
		dest[off] = 0
		off++
	}
	return uint32(size), 0
}

// The root directory of a guest filesystem shows its root inode's
// attributes; a volume that cannot be opened has none.

func (v *volumeDir) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if errno := v.open(); errno != 0 {
		return 0, errno
	}
	if v.err != nil {
		return 0, syscall.ENODATA
	}
	return v.root.Getxattr(ctx, attr, dest)
}

func (v *volumeDir) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	if errno := v.open(); errno != 0 {
		return 0, errno
	}
	if v.err != nil {
		return 0, 0
	}
	return v.root.Listxattr(ctx, dest)
}
