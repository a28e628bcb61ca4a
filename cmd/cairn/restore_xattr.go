package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/partinfo"
)

// restoreXattrs gives target the extended attributes the guest file p of
// gfs has: user.* always, and as root also trusted.* and security.* (file
// capabilities, SELinux labels), like owners. POSIX ACLs are set from
// system.posix_acl_access/default, and ACLs the target picked up that the
// guest file does not have (inherited from a default ACL) are removed;
// XFS's trusted.SGI_ACL_* copies of them are not written as such.
// NTFS named data streams come as user.<stream> and are restored as such;
// NTFS's system.ntfs_* (DOS attributes, security descriptor, times) are
// never set: ext4 and XFS cannot hold them. A stream larger than 64 KiB
// (no Linux xattr holds it) is named in the error; the other attributes
// are set all the same.
// Nothing happens when gfs does not expose xattrs (see hideXattrs) or its
// filesystem has none. Call it after owner and mode are set: chown clears
// a file capability.
func restoreXattrs(gfs fs.FS, p, target string) error {
	xfs, ok := gfs.(partinfo.XattrFS)
	if !ok {
		return nil
	}
	xs, err := xfs.LXattrs(p)
	if errors.Is(err, partinfo.ErrNoXattrs) {
		return nil
	}
	var failed xattrFailures
	tooLarge := errors.Is(err, partinfo.ErrXattrTooLarge)
	if err != nil && !tooLarge {
		return fmt.Errorf("read extended attributes of %s: %w", p, err)
	}
	root := os.Geteuid() == 0
	has := map[string]bool{}
	for _, x := range xs {
		has[x.Name] = true
		if !root && (strings.HasPrefix(x.Name, "trusted.") || strings.HasPrefix(x.Name, "security.")) {
			continue
		}
		if strings.HasPrefix(x.Name, "system.ntfs_") {
			continue // NTFS DOS attributes, descriptor, times: no Linux filesystem holds them
		}
		if x.Name == "trusted.SGI_ACL_FILE" || x.Name == "trusted.SGI_ACL_DEFAULT" {
			continue // XFS's own form of the ACLs, restored as system.posix_acl_*
		}
		if err := unix.Lsetxattr(target, x.Name, x.Value, 0); err != nil {
			failed.add(x.Name, err)
		}
	}
	for _, acl := range []string{partinfo.XattrACLAccess, partinfo.XattrACLDefault} {
		if has[acl] {
			continue
		}
		err := unix.Lremovexattr(target, acl)
		if err != nil && !errors.Is(err, unix.ENODATA) && !errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EPERM) {
			failed.add("remove inherited "+acl, err)
		}
	}
	if tooLarge {
		// The attributes that fit are set; the file is still reported.
		if failed.n > 0 {
			return fmt.Errorf("%s: %w; also cannot set %s", target, err, failed.summary(len(xs)))
		}
		return fmt.Errorf("%s: %w; pass --no-xattrs to leave extended attributes out", target, err)
	}
	if failed.n > 0 {
		return fmt.Errorf("%s: cannot set %s: restore onto a filesystem that can hold them (XFS, or ext4 with ea_inode for values larger than a block), as root for trusted.* and security.*, or pass --no-xattrs to leave them out",
			target, failed.summary(len(xs)))
	}
	return nil
}

// xattrFailures collects the attributes a target refused, by error.
type xattrFailures struct {
	n     int
	errs  []string            // distinct errors, in order of first sight
	byErr map[string][]string // error -> attribute names
}

func (f *xattrFailures) add(name string, err error) {
	if f.byErr == nil {
		f.byErr = map[string][]string{}
	}
	e := err.Error()
	if _, ok := f.byErr[e]; !ok {
		f.errs = append(f.errs, e)
	}
	f.byErr[e] = append(f.byErr[e], name)
	f.n++
}

// summary is one short clause for the report line: how many of total
// attributes failed, each error with the first few names (a file with
// hundreds of attributes made a line of tens of kilobytes).
func (f *xattrFailures) summary(total int) string {
	const show = 3
	var parts []string
	for _, e := range f.errs {
		names := f.byErr[e]
		list := strings.Join(names[:min(show, len(names))], ", ")
		if len(names) > show {
			list += fmt.Sprintf(" and %d more", len(names)-show)
		}
		parts = append(parts, fmt.Sprintf("%s: %s", e, list))
	}
	return fmt.Sprintf("%d of %d extended attributes (%s)", f.n, total, strings.Join(parts, "; "))
}

// hideXattrs returns gfs without its extended attributes (--no-xattrs):
// restoreXattrs then does nothing.
func hideXattrs(gfs fs.FS) fs.FS {
	if l, ok := gfs.(linkFS); ok {
		return noXattrFS{l}
	}
	return gfs
}

// linkFS is what restore-file uses of a guest fs.FS besides xattrs.
type linkFS interface {
	fs.ReadDirFS
	fs.StatFS
	fs.ReadLinkFS
}

type noXattrFS struct{ linkFS }
