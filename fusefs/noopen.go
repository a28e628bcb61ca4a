package fusefs

import (
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Open answers ENOSYS when the kernel supports opening files without an
// OPEN request (FUSE_NO_OPEN_SUPPORT): the kernel then opens every file of
// the mount by itself, as if FOPEN_KEEP_CACHE had been answered, and sends
// neither OPEN nor RELEASE again on this connection. A tar of a guest tree
// then costs one READ per small file instead of OPEN, READ, RELEASE
// (issue #17: 50,700 requests -> 23,000 for the real root tree).
//
// Every file of the mount is read-only and serves reads without a file
// handle: READ arrives with file handle 0 and go-fuse's bridge calls the
// node's Read with a nil handle (imgFile and bootFile borrow what they
// need per read). The mount itself is read-only (MS_RDONLY, or "ro"), so
// the kernel refuses opens for writing before asking.
func (f *noOpendirFS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if f.noOpen() {
		return fuse.ENOSYS
	}
	return f.RawFileSystem.Open(cancel, in, out)
}

// noOpen reports whether the kernel supports opening files without OPEN.
func (f *noOpendirFS) noOpen() bool {
	s := f.server.Load()
	return s != nil && s.KernelSettings().Flags64()&fuse.CAP_NO_OPEN_SUPPORT != 0
}
