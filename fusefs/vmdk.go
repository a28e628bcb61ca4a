package fusefs

import (
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/vmdkdesc"
)

// vmdkSafeName reports whether a disk name can be written as a VMDK
// extent file name (the format has no quoting for these characters).
func vmdkSafeName(name string) bool { return vmdkdesc.SafeName(name) }

// vmdkDescriptor is a monolithic-flat VMDK descriptor whose single
// extent is the <disk>.img beside it (internal/vmdkdesc). The extent's
// access is RW although the image is read-only (the mount refuses
// writes): QEMU ignores extents marked RDONLY and then has no data at all.
func vmdkDescriptor(p blockmap.Point, d blockmap.DiskInfo) []byte {
	return vmdkdesc.Descriptor(p, d, vmdkdesc.MonolithicFlat, d.Name+".img", "cairn")
}
