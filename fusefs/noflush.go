package fusefs

import "github.com/hanwen/go-fuse/v2/fuse"

// Flush answers ENOSYS: the kernel then sends no FLUSH request on any
// later close(2) of the mount (it remembers the answer per connection).
// Nothing in the read-only mount has anything to flush, and a tar of a
// guest tree saves one round trip per file (OPEN, READ, FLUSH, RELEASE
// became OPEN, READ, RELEASE).
func (f *noOpendirFS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	return fuse.ENOSYS
}
