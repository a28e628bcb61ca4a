package fusefs

import (
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/cairnbackup/cairn/blockmap"
)

// vmdkSafeName reports whether a disk name can be written as a VMDK
// extent file name (the format has no quoting for these characters).
func vmdkSafeName(name string) bool {
	return !strings.ContainsAny(name, "\"\n\r")
}

// vmdkDescriptor is a monolithic-flat VMDK descriptor whose single
// extent is the <disk>.img beside it. The extent's access is RW although
// the image is read-only (the mount refuses writes): QEMU ignores extents
// marked RDONLY and then has no data at all.
func vmdkDescriptor(p blockmap.Point, d blockmap.DiskInfo) []byte {
	sectors := (d.Size + 511) / 512
	const heads, sectorsPerTrack = 255, 63
	cylinders := min(max(sectors/(heads*sectorsPerTrack), 1), 65535)
	h := fnv.New32a()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00%s", p.VM, p.ID, p.Gen, d.Name)
	cid := h.Sum32()
	if cid == 0xffffffff || cid == 0xfffffffe {
		cid = 1
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Disk DescriptorFile\n")
	fmt.Fprintf(&b, "# cairn: VM %s, recovery point %s, disk %s\n", oneLine(p.VM), p.ID, oneLine(d.Name))
	fmt.Fprintf(&b, "version=1\n")
	fmt.Fprintf(&b, "CID=%08x\n", cid)
	fmt.Fprintf(&b, "parentCID=ffffffff\n")
	fmt.Fprintf(&b, "createType=\"monolithicFlat\"\n\n")
	fmt.Fprintf(&b, "# Extent description\n")
	fmt.Fprintf(&b, "RW %d FLAT \"%s.img\" 0\n\n", sectors, d.Name)
	fmt.Fprintf(&b, "# The Disk Data Base\n#DDB\n\n")
	fmt.Fprintf(&b, "ddb.virtualHWVersion = \"4\"\n")
	fmt.Fprintf(&b, "ddb.geometry.cylinders = \"%d\"\n", cylinders)
	fmt.Fprintf(&b, "ddb.geometry.heads = \"%d\"\n", heads)
	fmt.Fprintf(&b, "ddb.geometry.sectors = \"%d\"\n", sectorsPerTrack)
	fmt.Fprintf(&b, "ddb.adapterType = \"lsilogic\"\n")
	return []byte(b.String())
}

// oneLine keeps a name from breaking a descriptor comment line.
func oneLine(s string) string {
	return strings.NewReplacer("\n", " ", "\r", " ").Replace(s)
}
