package vmdkdesc

import (
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/cairnbackup/cairn/blockmap"
)

// Style is the descriptor's createType and the matching extent line.
type Style int

const (
	// MonolithicFlat: createType "monolithicFlat", extent `RW N FLAT "file" 0`
	// (qemu's vmdk driver, VMware Workstation).
	MonolithicFlat Style = iota
	// VMFS: createType "vmfs", extent `RW N VMFS "file"` (ESXi's own
	// NAME.vmdk beside NAME-flat.vmdk on a datastore).
	VMFS
)

// Heads and SectorsPerTrack are the geometry every descriptor names
// (ESXi's for disks over 1 GB; guests ignore it for LBA).
const (
	Heads           = 255
	SectorsPerTrack = 63
)

// SafeName reports whether name can be written as an extent file name
// (the format has no quoting for '"' or line breaks).
func SafeName(name string) bool {
	return !strings.ContainsAny(name, "\"\n\r")
}

// Descriptor is the descriptor text of disk d of point p whose single
// extent is the file extent beside it. comment is the second comment line
// ("cairn: VM v, recovery point p, disk d" for comment "cairn"). The
// extent's access is RW even where the file is read-only: qemu ignores
// extents marked RDONLY and then has no data at all. The same arguments
// give the same bytes.
func Descriptor(p blockmap.Point, d blockmap.DiskInfo, style Style, extent, comment string) []byte {
	sectors := (d.Size + 511) / 512
	cylinders := min(max(sectors/(Heads*SectorsPerTrack), 1), 65535)
	var b strings.Builder
	fmt.Fprintf(&b, "# Disk DescriptorFile\n")
	fmt.Fprintf(&b, "# %s: VM %s, recovery point %s, disk %s\n", oneLine(comment), oneLine(p.VM), oneLine(p.ID), oneLine(d.Name))
	fmt.Fprintf(&b, "version=1\nCID=%08x\nparentCID=ffffffff\n", CID(p, d))
	switch style {
	case VMFS:
		fmt.Fprintf(&b, "createType=\"vmfs\"\n\n# Extent description\nRW %d VMFS \"%s\"\n\n", sectors, extent)
	default:
		fmt.Fprintf(&b, "createType=\"monolithicFlat\"\n\n# Extent description\nRW %d FLAT \"%s\" 0\n\n", sectors, extent)
	}
	fmt.Fprintf(&b, "# The Disk Data Base\n#DDB\n\n")
	fmt.Fprintf(&b, "ddb.virtualHWVersion = \"4\"\n")
	fmt.Fprintf(&b, "ddb.geometry.cylinders = \"%d\"\n", cylinders)
	fmt.Fprintf(&b, "ddb.geometry.heads = \"%d\"\n", Heads)
	fmt.Fprintf(&b, "ddb.geometry.sectors = \"%d\"\n", SectorsPerTrack)
	fmt.Fprintf(&b, "ddb.adapterType = \"lsilogic\"\n")
	return []byte(b.String())
}

// CID is the descriptor's content id: FNV-1a of VM, point ID, generation
// and disk name, never 0xffffffff or 0xfffffffe (which mean "no parent"
// and "unset" to VMware).
func CID(p blockmap.Point, d blockmap.DiskInfo) uint32 {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00%s", p.VM, p.ID, p.Gen, d.Name)
	cid := h.Sum32()
	if cid == 0xffffffff || cid == 0xfffffffe {
		cid = 1
	}
	return cid
}

// oneLine keeps a name from breaking a descriptor comment line.
func oneLine(s string) string {
	return strings.NewReplacer("\n", " ", "\r", " ").Replace(s)
}
