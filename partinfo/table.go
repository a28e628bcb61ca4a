package partinfo

import (
	"errors"
	"fmt"
	"io"
)

// TableType names the kind of partition table found on a disk.
type TableType string

// Partition table kinds.
const (
	TableNone TableType = "none" // no table: the whole disk is one volume (or empty)
	TableMBR  TableType = "mbr"
	TableGPT  TableType = "gpt"
)

// sectorSize is the logical sector size cairn assumes for MBR disks;
// GPT is also probed at 4096.
const sectorSize = 512

// Partition is one entry of a partition table.
type Partition struct {
	// Number is the Linux-style number: MBR primaries 1-4, logical
	// partitions 5 and up in EBR-chain order, GPT entries by index + 1.
	Number int
	Start  int64 // byte offset on the disk
	Size   int64 // bytes
	// Type is "0x83"-style for MBR and the type GUID for GPT.
	Type     string
	TypeName string
	MBRType  byte   // MBR type byte (0 on GPT)
	Name     string // GPT partition name
	GUID     string // GPT unique partition GUID
	Bootable bool   // MBR active flag, or GPT legacy-BIOS-bootable attribute
	// Attributes holds the raw GPT attribute bits.
	Attributes uint64
	// Extended marks the MBR extended container; it holds logical
	// partitions, not a filesystem.
	Extended bool
	// Logical marks a partition inside an MBR extended partition.
	Logical bool
	// Problems lists validation findings (overlap, out of range); a
	// partition with problems is still listed.
	Problems []string
}

// Label returns "p<Number>", the name cairn shows for the partition.
func (p Partition) Label() string { return fmt.Sprintf("p%d", p.Number) }

// Table is a disk's partition table.
type Table struct {
	Type       TableType
	SectorSize int
	DiskSize   int64
	// DiskGUID is the GPT disk GUID; DiskSignature the MBR disk signature.
	DiskGUID      string
	DiskSignature uint32
	Partitions    []Partition
	// DynamicDisk is true for a Windows dynamic disk (LDM), whose volumes
	// cairn cannot browse.
	DynamicDisk bool
	// UsedBackupGPT is true when the primary GPT was corrupt and the
	// backup header at the end of the disk was used.
	UsedBackupGPT bool
	// Warnings lists table-level findings (bad CRC, backup used, ...).
	Warnings []string
}

// ReadTable reads the partition table of a disk of the given size.
// A disk without a recognisable table returns Type TableNone and no
// error. Corrupt GPT structures that cannot be recovered from the
// backup return an error wrapping ErrCorrupt.
func ReadTable(r io.ReaderAt, size int64) (t *Table, err error) {
	defer func() {
		if p := recover(); p != nil {
			t, err = nil, fmt.Errorf("read partition table: panic %v: %w", p, ErrCorrupt)
		}
	}()
	if size < sectorSize {
		return &Table{Type: TableNone, SectorSize: sectorSize, DiskSize: size}, nil
	}
	mbr := make([]byte, sectorSize)
	if err := readFull(r, mbr, 0); err != nil {
		return nil, fmt.Errorf("read MBR: %w", err)
	}
	entries, ok := parseMBREntries(mbr)
	if !ok || looksLikeVolumeBootSector(r, size) {
		// A GPT without a protective MBR is still a GPT.
		if g, gerr := readGPT(r, size); gerr == nil {
			g.Warnings = append(g.Warnings, "GPT without a valid protective MBR")
			return g, nil
		}
		return &Table{Type: TableNone, SectorSize: sectorSize, DiskSize: size}, nil
	}
	for _, e := range entries {
		if e.typ == mbrTypeProtective {
			g, gerr := readGPT(r, size)
			if gerr != nil {
				return nil, gerr
			}
			return g, nil
		}
	}
	return readMBR(r, size, mbr, entries)
}

// readFull reads len(p) bytes at off, treating a short read as an error.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %d bytes at %d: %w", len(p), off, err)
}

// looksLikeVolumeBootSector reports whether sector 0 is the boot sector
// of a filesystem (a whole-disk FAT/NTFS/exFAT volume also ends in 55 AA).
func looksLikeVolumeBootSector(r io.ReaderAt, size int64) bool {
	d := Detect(r, 0, size)
	switch d.Type {
	case "ntfs", "exfat", "fat12", "fat16", "fat32", "bitlocker", "refs":
		return true
	}
	return false
}
