package backupd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"
)

// HotAddWriteTransport attaches the target disk to the proxy VM
// (persistent) and writes its device; closing the target detaches it.
type HotAddWriteTransport struct {
	Proxy RestoreProxy
	// Device finds the attached disk's local device (default DeviceByUUID).
	Device HotAddDeviceFunc
	Logger *slog.Logger
}

// Name is "hotadd".
func (*HotAddWriteTransport) Name() string { return WriteTransportHotAdd }

// Open attaches the disk and opens its device for writing.
func (t *HotAddWriteTransport) Open(ctx context.Context, d DiskRef) (DiskTarget, error) {
	if t.Proxy == nil {
		return nil, ErrNoProxyVM
	}
	return openAttached(ctx, t.Proxy.Name(), t.Proxy.AttachForWrite, t.Proxy.Detach, d.Disk.FileName, t.Device, t.Logger,
		func(dev string, detach func() error) (DiskTarget, error) {
			f, err := os.OpenFile(dev, os.O_RDWR, 0)
			if err != nil {
				return nil, err
			}
			if size, err := f.Seek(0, io.SeekEnd); err != nil || size < d.Disk.Capacity {
				f.Close()
				if err == nil {
					err = fmt.Errorf("device %s has %d bytes, the disk %d", dev, size, d.Disk.Capacity)
				}
				return nil, err
			}
			return &hotaddTarget{f: f, size: d.Disk.Capacity, detach: detach}, nil
		})
}

// hotaddTarget writes a disk hot-added to the proxy VM as a local device.
type hotaddTarget struct {
	f      *os.File
	size   int64
	detach func() error
}

func (t *hotaddTarget) WriteAt(ctx context.Context, p []byte, off int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if off < 0 || off+int64(len(p)) > t.size {
		return fmt.Errorf("write [%d,+%d) outside the disk of %d bytes", off, len(p), t.size)
	}
	if _, err := t.f.WriteAt(p, off); err != nil {
		return fmt.Errorf("write %s at offset %d: %w", t.f.Name(), off, err)
	}
	return nil
}

// WriteZeroes punches the range (a block device discards it and reads
// zeros, a file gets a hole), else writes zeros.
func (t *hotaddTarget) WriteZeroes(ctx context.Context, off, n int64) error {
	return t.zero(ctx, unix.FALLOC_FL_PUNCH_HOLE, off, n)
}

// WriteZeroesAllocated zeroes the range in place (FALLOC_FL_ZERO_RANGE),
// else writes zeros; the range stays allocated.
func (t *hotaddTarget) WriteZeroesAllocated(ctx context.Context, off, n int64) error {
	return t.zero(ctx, unix.FALLOC_FL_ZERO_RANGE, off, n)
}

// zero zeroes the range with fallocate(mode), else by writing zeros.
func (t *hotaddTarget) zero(ctx context.Context, mode uint32, off, n int64) error {
	if err := unix.Fallocate(int(t.f.Fd()), mode|unix.FALLOC_FL_KEEP_SIZE, off, n); err == nil {
		return nil
	}
	buf := make([]byte, min(n, 4<<20))
	for n > 0 {
		k := min(n, int64(len(buf)))
		if err := t.WriteAt(ctx, buf[:k], off); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}

func (t *hotaddTarget) Flush(context.Context) error {
	if err := t.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", t.f.Name(), err)
	}
	return nil
}

func (t *hotaddTarget) Retries() int64 { return 0 }

func (t *hotaddTarget) Close() error {
	err := t.f.Close()
	if derr := t.detach(); derr != nil {
		err = errors.Join(err, derr)
	}
	return err
}
