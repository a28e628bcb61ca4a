package lab

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path"
	"sort"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"

	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/fat"
)

const (
	sectorSize = 512
	// partStart is the first partition's start sector (1 MiB, as tools align).
	partStart = 2048
	// MinDiskSize is the smallest disk the lab makes: FAT32 needs room.
	MinDiskSize = 64 << 20
)

// image is a raw disk image file holding one FAT32 partition, open for
// changes with go-diskfs.
type image struct {
	path string
	disk *disk.Disk
	fs   filesystem.FileSystem
	// partOff and partSize locate the FAT32 partition in the image;
	// extraOff and extraSize the second (Linux) partition, if any.
	partOff, partSize   int64
	extraOff, extraSize int64
}

// tableKind selects the partition table of a new image.
type tableKind int

const (
	tableGPT tableKind = iota
	tableMBR
)

// createImage makes a sparse raw image of size bytes at path with a
// partition table and one FAT32 partition labelled label, and fills it
// with files. With reserve > 0 (MBR only) the FAT32 partition stops
// reserve bytes early and a second, Linux partition fills that room
// (content written later with writeExt4).
func createImage(path string, size int64, kind tableKind, label string, files map[string][]byte, reserve int64) (*image, error) {
	if size < MinDiskSize || size%(1<<20) != 0 {
		return nil, fmt.Errorf("disk size %d: must be a multiple of 1 MiB and at least %d MiB", size, MinDiskSize>>20)
	}
	_ = os.Remove(path)
	d, err := diskfs.Create(path, size, diskfs.SectorSizeDefault)
	if err != nil {
		return nil, fmt.Errorf("create image %s: %w", path, err)
	}
	// Leave 1 MiB free at the end (room for the backup GPT).
	end := uint64((size-reserve)/sectorSize) - partStart - 1
	if reserve < 0 || reserve%(1<<20) != 0 || (reserve > 0 && kind != tableMBR) || size-reserve < MinDiskSize/2 {
		d.Close()
		return nil, fmt.Errorf("image %s: cannot reserve %d bytes", path, reserve)
	}
	img := &image{path: path, disk: d, partOff: partStart * sectorSize, partSize: int64(end-partStart+1) * sectorSize}
	var table partition.Table
	switch kind {
	case tableGPT:
		table = &gpt.Table{
			LogicalSectorSize:  sectorSize,
			PhysicalSectorSize: sectorSize,
			ProtectiveMBR:      true,
			Partitions: []*gpt.Partition{{
				Index: 1, Start: partStart, End: end, Type: gpt.MicrosoftBasicData, Name: label,
			}},
		}
	case tableMBR:
		t := &mbr.Table{
			LogicalSectorSize:  sectorSize,
			PhysicalSectorSize: sectorSize,
			Partitions: []*mbr.Partition{{
				Index: 1, Type: mbr.Fat32LBA, Start: partStart, Size: uint32(end - partStart + 1),
			}},
		}
		if reserve > 0 {
			img.extraOff = int64(end+1) * sectorSize
			img.extraSize = reserve
			t.Partitions = append(t.Partitions, &mbr.Partition{
				Index: 2, Type: mbr.Linux, Start: uint32(end + 1), Size: uint32(reserve / sectorSize),
			})
		}
		table = t
	}
	if err := d.Partition(table); err != nil {
		img.close()
		return nil, fmt.Errorf("write partition table to %s: %w", path, err)
	}
	fsys, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: 1, FSType: filesystem.TypeFat32, VolumeLabel: label})
	if err != nil {
		img.close()
		return nil, fmt.Errorf("create FAT32 on %s: %w", path, err)
	}
	img.fs = fsys
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if err := img.writeFile(p, files[p]); err != nil {
			img.close()
			return nil, err
		}
	}
	return img, nil
}

// writeFile creates or overwrites a file (and its parent directories).
func (img *image) writeFile(p string, data []byte) error {
	if dir := path.Dir(p); dir != "/" {
		if err := img.fs.Mkdir(dir); err != nil {
			return fmt.Errorf("mkdir %s: %w", dir, err)
		}
	}
	f, err := img.fs.OpenFile(p, os.O_CREATE|os.O_RDWR|os.O_TRUNC)
	if err != nil {
		return fmt.Errorf("open %s for writing: %w", p, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", p, err)
	}
	return nil
}

// removeFile deletes a file and frees its clusters: go-diskfs's Remove
// only drops the directory entry, so the lab clears the file's FAT entries
// itself and reopens the filesystem (go-diskfs keeps the FAT in memory).
func (img *image) removeFile(p string) error {
	f, err := img.fs.OpenFile(p, os.O_RDONLY)
	if err != nil {
		return fmt.Errorf("open %s: %w", p, err)
	}
	var chain []uint32
	if c, ok := f.(interface{ GetClusterChain() ([]uint32, error) }); ok {
		chain, err = c.GetClusterChain()
	}
	f.Close()
	if err != nil {
		return fmt.Errorf("clusters of %s: %w", p, err)
	}
	if err := img.fs.Remove(p); err != nil {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	if len(chain) == 0 {
		return nil
	}
	if err := img.freeClusters(chain); err != nil {
		return fmt.Errorf("free the clusters of %s: %w", p, err)
	}
	return img.reopen()
}

// freeClusters marks clusters free in every FAT copy of the volume.
func (img *image) freeClusters(clusters []uint32) error {
	f, err := os.OpenFile(img.path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	boot := make([]byte, sectorSize)
	if _, err := f.ReadAt(boot, img.partOff); err != nil {
		return fmt.Errorf("read boot sector: %w", err)
	}
	geo, err := partinfo.ParseFATBootSector(boot)
	if err != nil {
		return err
	}
	if geo.Type != "fat32" {
		return fmt.Errorf("volume is %s, not fat32", geo.Type)
	}
	entry := make([]byte, 4)
	for n := int64(0); n < geo.NumFATs; n++ {
		base := img.partOff + geo.FATOffset + n*geo.FATSectors*geo.BytesPerSector
		for _, c := range clusters {
			if c < 2 || c >= geo.ClusterCount+2 {
				return fmt.Errorf("cluster %d out of range", c)
			}
			off := base + int64(c)*4
			if _, err := f.ReadAt(entry, off); err != nil {
				return fmt.Errorf("read FAT entry %d: %w", c, err)
			}
			// The top 4 bits of a FAT32 entry are reserved: keep them.
			v := binary.LittleEndian.Uint32(entry) & 0xF0000000
			binary.LittleEndian.PutUint32(entry, v)
			if _, err := f.WriteAt(entry, off); err != nil {
				return fmt.Errorf("write FAT entry %d: %w", c, err)
			}
		}
	}
	return nil
}

// reopen drops go-diskfs's in-memory state and reads the volume again.
func (img *image) reopen() error {
	if err := img.close(); err != nil {
		return fmt.Errorf("close %s: %w", img.path, err)
	}
	d, err := diskfs.Open(img.path)
	if err != nil {
		return fmt.Errorf("reopen %s: %w", img.path, err)
	}
	fsys, err := d.GetFilesystem(1)
	if err != nil {
		d.Close()
		return fmt.Errorf("reopen FAT32 on %s: %w", img.path, err)
	}
	img.disk, img.fs = d, fsys
	return nil
}

// check reads files back from the image with cairn's own FAT reader
// (go-diskfs's reads can be stale after its own writes) and compares them
// with what was written; deleted files must be gone.
func (img *image) check(written map[string][]byte, deleted []string) error {
	f, err := os.Open(img.path)
	if err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	defer f.Close()
	vol, err := fat.Open(f, img.partOff, img.partSize)
	if err != nil {
		return fmt.Errorf("read back: open FAT: %w", err)
	}
	fsys := partinfo.AsFS(vol)
	for p, data := range written {
		got, err := iofs.ReadFile(fsys, strings.TrimPrefix(p, "/"))
		if err != nil {
			return fmt.Errorf("read back %s: %w", p, err)
		}
		if !bytes.Equal(got, data) {
			return fmt.Errorf("read back %s: %d bytes (sha256 %s), wrote %d (sha256 %s)", p, len(got), sha256Hex(got), len(data), sha256Hex(data))
		}
	}
	for _, p := range deleted {
		if _, err := iofs.Stat(fsys, strings.TrimPrefix(p, "/")); !errors.Is(err, iofs.ErrNotExist) {
			return fmt.Errorf("read back %s: still there after delete (%v)", p, err)
		}
	}
	return nil
}

func (img *image) close() error {
	if img.disk == nil {
		return nil
	}
	err := img.disk.Close()
	img.disk = nil
	return err
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
