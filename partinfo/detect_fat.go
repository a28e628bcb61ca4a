package partinfo

import "fmt"

// FATGeometry is the layout a FAT boot sector (BPB) describes.
type FATGeometry struct {
	Type              string // fat12, fat16, fat32
	BytesPerSector    int64
	SectorsPerCluster int64
	ReservedSectors   int64
	NumFATs           int64
	RootEntries       int64 // FAT12/16 fixed root directory entries
	TotalSectors      int64
	FATSectors        int64
	RootCluster       uint32 // FAT32 root directory cluster
	FSInfoSector      int64  // FAT32
	Serial            uint32
	Label             string
	// Derived values.
	FATOffset     int64 // byte offset of the first FAT
	RootDirOffset int64 // FAT12/16 root directory byte offset
	DataOffset    int64 // byte offset of cluster 2
	ClusterSize   int64
	ClusterCount  uint32
}

// ParseFATBootSector validates a FAT boot sector and derives its layout.
// The FAT variant is decided by the BPB layout and the cluster count,
// never by the informational type string.
func ParseFATBootSector(b []byte) (FATGeometry, error) {
	var g FATGeometry
	if len(b) < 512 {
		return g, fmt.Errorf("boot sector too short: %w", ErrCorrupt)
	}
	if b[510] != 0x55 || b[511] != 0xAA {
		return g, fmt.Errorf("boot sector has no 55 AA signature: %w", ErrCorrupt)
	}
	if b[0] != 0xEB && b[0] != 0xE9 {
		return g, fmt.Errorf("boot sector has no jump instruction: %w", ErrCorrupt)
	}
	g.BytesPerSector = int64(le16(b, 11))
	g.SectorsPerCluster = int64(b[13])
	g.ReservedSectors = int64(le16(b, 14))
	g.NumFATs = int64(b[16])
	g.RootEntries = int64(le16(b, 17))
	g.TotalSectors = int64(le16(b, 19))
	if g.TotalSectors == 0 {
		g.TotalSectors = int64(le32(b, 32))
	}
	g.FATSectors = int64(le16(b, 22))
	fat32 := g.FATSectors == 0
	if fat32 {
		g.FATSectors = int64(le32(b, 36))
	}
	switch g.BytesPerSector {
	case 512, 1024, 2048, 4096:
	default:
		return g, fmt.Errorf("bytes per sector %d invalid: %w", g.BytesPerSector, ErrCorrupt)
	}
	if g.SectorsPerCluster == 0 || g.SectorsPerCluster&(g.SectorsPerCluster-1) != 0 {
		return g, fmt.Errorf("sectors per cluster %d invalid: %w", g.SectorsPerCluster, ErrCorrupt)
	}
	if g.ReservedSectors == 0 || g.NumFATs == 0 || g.NumFATs > 4 || g.FATSectors == 0 || g.TotalSectors == 0 {
		return g, fmt.Errorf("BPB fields invalid (reserved %d, FATs %d, FAT sectors %d, total %d): %w",
			g.ReservedSectors, g.NumFATs, g.FATSectors, g.TotalSectors, ErrCorrupt)
	}
	bps := g.BytesPerSector
	rootSectors := (g.RootEntries*32 + bps - 1) / bps
	dataSector := g.ReservedSectors + g.NumFATs*g.FATSectors + rootSectors
	if dataSector >= g.TotalSectors {
		return g, fmt.Errorf("data area starts past the end of the volume: %w", ErrCorrupt)
	}
	clusters := (g.TotalSectors - dataSector) / g.SectorsPerCluster
	if clusters > 0x0FFFFFF5 {
		return g, fmt.Errorf("%d clusters is too many: %w", clusters, ErrCorrupt)
	}
	g.ClusterCount = uint32(clusters)
	g.ClusterSize = g.SectorsPerCluster * bps
	g.FATOffset = g.ReservedSectors * bps
	g.RootDirOffset = (g.ReservedSectors + g.NumFATs*g.FATSectors) * bps
	g.DataOffset = dataSector * bps
	// Like Linux and mtools, a zero 16-bit FAT size means FAT32 even on
	// a volume with few clusters; otherwise the cluster count decides.
	switch {
	case fat32:
		g.Type = "fat32"
	case clusters < 4085:
		g.Type = "fat12"
	case clusters < 65525:
		g.Type = "fat16"
	default:
		return g, fmt.Errorf("FAT16 layout with %d clusters: %w", clusters, ErrCorrupt)
	}
	if g.Type == "fat32" {
		g.RootCluster = le32(b, 44)
		g.FSInfoSector = int64(le16(b, 48))
		g.Serial = le32(b, 67)
		if b[66] == 0x29 {
			g.Label = cString(b[71:82])
		}
	} else {
		g.Serial = le32(b, 39)
		if b[38] == 0x29 {
			g.Label = cString(b[43:54])
		}
	}
	// Entries needed per FAT must fit in the FAT.
	need := map[string]int64{"fat12": (int64(clusters)+2)*3/2 + 1, "fat16": (int64(clusters) + 2) * 2, "fat32": (int64(clusters) + 2) * 4}[g.Type]
	if g.FATSectors*bps < need {
		return g, fmt.Errorf("FAT of %d sectors too small for %d clusters: %w", g.FATSectors, clusters, ErrCorrupt)
	}
	if g.Label == "NO NAME" {
		g.Label = ""
	}
	return g, nil
}

func detectFAT(v *volume) (Detection, bool) {
	b := v.at(0, 512)
	if b == nil {
		return Detection{}, false
	}
	g, err := ParseFATBootSector(b)
	if err != nil {
		return Detection{}, false
	}
	d := unknownSpace(Detection{Type: g.Type, Label: g.Label, BlockSize: int(g.ClusterSize),
		UUID: fmt.Sprintf("%04X-%04X", g.Serial>>16, g.Serial&0xffff)})
	d.Size = g.TotalSectors * g.BytesPerSector
	if g.Type == "fat32" && g.FSInfoSector > 0 {
		fi := v.at(g.FSInfoSector*g.BytesPerSector, 512)
		if fi != nil && string(fi[0:4]) == "RRaA" && string(fi[484:488]) == "rrAa" {
			if free := le32(fi, 488); free != 0xFFFFFFFF && free <= g.ClusterCount {
				d.Free = int64(free) * g.ClusterSize
				d.Used = int64(g.ClusterCount-free) * g.ClusterSize
			}
		}
	}
	return d, true
}
