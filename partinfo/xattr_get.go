package partinfo

import (
	"errors"
	"fmt"
)

// Errors of XattrGetter.
var (
	// ErrNoSuchXattr: the inode has no attribute of that name (ENODATA).
	ErrNoSuchXattr = errors.New("no such extended attribute")
	// ErrXattrTooLarge: the value is larger than a Linux extended
	// attribute can be (XattrSizeMax), e.g. a big NTFS data stream (E2BIG).
	// XattrReader.Xattrs may return it together with the attributes
	// that fit (NTFS does).
	ErrXattrTooLarge = errors.New("value is larger than a Linux extended attribute can hold")
)

// XattrSizeMax is the largest value Linux getxattr/setxattr transport
// (XATTR_SIZE_MAX).
const XattrSizeMax = 64 << 10

// XattrGetter is the optional interface of a Filesystem whose attributes
// are answered one name at a time, as ntfs-3g answers NTFS's: XattrNames
// gives what listxattr shows (no values read), Xattr the value of one
// name, including names listxattr does not show (NTFS's system.ntfs_*).
// Xattr returns an error wrapping ErrNoSuchXattr for a name the inode
// does not have, ErrXattrTooLarge for a value beyond XattrSizeMax.
type XattrGetter interface {
	XattrNames(ino uint64) ([]string, error)
	Xattr(ino uint64, name string) ([]byte, error)
}

// XattrGetterOf returns f's XattrGetter, if it has one.
func XattrGetterOf(f Filesystem) (XattrGetter, bool) {
	if s, ok := f.(*safeFS); ok {
		g, ok := s.fs.(XattrGetter)
		if !ok {
			return nil, false
		}
		return safeGetter{s, g}, true
	}
	g, ok := f.(XattrGetter)
	return g, ok
}

// safeGetter runs an XattrGetter behind safeFS's panic guard.
type safeGetter struct {
	s *safeFS
	g XattrGetter
}

func (x safeGetter) XattrNames(ino uint64) (n []string, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = panicked(x.s.name, fmt.Sprintf("list extended attributes of inode %d", ino), p)
		}
	}()
	return x.g.XattrNames(ino)
}

func (x safeGetter) Xattr(ino uint64, name string) (v []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = panicked(x.s.name, fmt.Sprintf("read extended attribute %s of inode %d", name, ino), p)
		}
	}()
	return x.g.Xattr(ino, name)
}
