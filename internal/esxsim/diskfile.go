package esxsim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"iter"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vmdk"
	"golang.org/x/sys/unix"
)

// flatName maps a descriptor name (vm_1.vmdk) to its flat extent (vm_1-flat.vmdk),
// the naming ESXi uses for monolithic flat disks.
func flatName(descriptor string) string {
	return strings.TrimSuffix(descriptor, ".vmdk") + "-flat.vmdk"
}

// writeDescriptor writes an ESXi-style descriptor for a flat extent of size
// bytes at descPath. The extent is named relative to the descriptor, so
// qemu-img and qemu-nbd open the descriptor directly.
func writeDescriptor(descPath string, size int64, uuid, adapter string, hwVersion int) error {
	desc := vmdk.NewDescriptor(vmdk.Extent{
		Type:       "VMFS",
		Permission: "RW",
		Size:       size / vmdk.SectorSize,
		Info:       filepath.Base(flatName(descPath)),
	})
	desc.CID = vmdk.DiskContentID(rand.Uint32())
	desc.ParentCID = 0xffffffff
	sectors := size / vmdk.SectorSize
	desc.DDB["adapterType"] = adapter
	desc.DDB["geometry.heads"] = "255"
	desc.DDB["geometry.sectors"] = "63"
	desc.DDB["geometry.cylinders"] = fmt.Sprint(max(1, sectors/(255*63)))
	desc.DDB["uuid"] = descriptorUUID(uuid)
	desc.DDB["virtualHWVersion"] = fmt.Sprint(hwVersion)
	desc.DDB["thinProvisioned"] = "1"
	var buf bytes.Buffer
	if err := desc.Write(&buf); err != nil {
		return fmt.Errorf("render descriptor %s: %w", descPath, err)
	}
	if err := os.WriteFile(descPath, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write descriptor: %w", err)
	}
	return nil
}

// descriptorUUID turns 6000C29x-... into the "60 00 C2 9x ..." form of ddb.uuid.
func descriptorUUID(u string) string {
	hex := strings.ReplaceAll(u, "-", "")
	var parts []string
	for i := 0; i+2 <= len(hex); i += 2 {
		parts = append(parts, hex[i:i+2])
	}
	return strings.Join(parts[:min(8, len(parts))], " ") + "-" + strings.Join(parts[min(8, len(parts)):], " ")
}

// createFlat makes (or resizes) a sparse flat file of exactly size bytes.
func createFlat(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("create flat file: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("size flat file %s to %d: %w", path, size, err)
	}
	return nil
}

// cloneFile copies src to dst, by reflink (FICLONE) where the filesystem
// shares extents, else by a copy of the data regions that keeps holes.
func cloneFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", src, err)
	}
	out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	if err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd())); err == nil {
		return out.Close()
	}
	if err := sparseCopy(in, out, st.Size()); err != nil {
		out.Close()
		os.Remove(dst)
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return out.Close()
}

// sparseCopy copies the data regions of in (SEEK_DATA/SEEK_HOLE) to out and
// sizes out to size, so holes stay holes.
func sparseCopy(in, out *os.File, size int64) error {
	if err := out.Truncate(size); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	return forEachDataRegion(in, size, func(start, end int64) error {
		for off := start; off < end; {
			n := int(min(int64(len(buf)), end-off))
			if _, err := in.ReadAt(buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("read at %d: %w", off, err)
			}
			if _, err := out.WriteAt(buf[:n], off); err != nil {
				return fmt.Errorf("write at %d: %w", off, err)
			}
			off += int64(n)
		}
		return nil
	})
}

// forEachDataRegion calls fn for each [start,end) data region of f below size.
// A filesystem without SEEK_DATA support yields one region covering the file.
func forEachDataRegion(f *os.File, size int64, fn func(start, end int64) error) error {
	fd := int(f.Fd())
	for off := int64(0); off < size; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
			return fn(off, size)
		}
		if err != nil {
			return fmt.Errorf("seek data at %d: %w", off, err)
		}
		if start >= size {
			return nil
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("seek hole at %d: %w", start, err)
		}
		end = min(end, size)
		if err := fn(start, end); err != nil {
			return err
		}
		off = end
	}
	return nil
}

// nonZeroBlocks returns, in order, the indexes of the blockSize blocks of the
// file at path (size bytes) that are allocated and hold a non-zero byte.
func nonZeroBlocks(path string, size, blockSize int64) ([]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	var blocks []int64
	buf := make([]byte, blockSize)
	last := int64(-1)
	err = forEachDataRegion(f, size, func(start, end int64) error {
		for b := start / blockSize; b*blockSize < end; b++ {
			if b <= last {
				continue
			}
			last = b
			n := min(blockSize, size-b*blockSize)
			if _, err := f.ReadAt(buf[:n], b*blockSize); err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("read block %d: %w", b, err)
			}
			if !allZero(buf[:n]) {
				blocks = append(blocks, b)
			}
		}
		return nil
	})
	return blocks, err
}

func allZero(p []byte) bool {
	for len(p) >= 8 {
		if p[0]|p[1]|p[2]|p[3]|p[4]|p[5]|p[6]|p[7] != 0 {
			return false
		}
		p = p[8:]
	}
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}

// flatDisks yields the virtual disks among devices whose backing is a flat
// file (the only kind the simulator keeps data for), with that backing.
func flatDisks(devices []types.BaseVirtualDevice) iter.Seq2[*types.VirtualDisk, *types.VirtualDiskFlatVer2BackingInfo] {
	return func(yield func(*types.VirtualDisk, *types.VirtualDiskFlatVer2BackingInfo) bool) {
		for _, dev := range devices {
			disk, ok := dev.(*types.VirtualDisk)
			if !ok {
				continue
			}
			b, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
			if !ok {
				continue
			}
			if !yield(disk, b) {
				return
			}
		}
	}
}
