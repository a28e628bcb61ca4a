package backupd

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/backupd/vsphere"
)

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
	if err := unix.Fallocate(int(t.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n); err == nil {
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

// openHotAddTarget attaches the target disk to the proxy VM (persistent)
// and opens its device for writing; closing detaches it.
func (j *restoreJob) openHotAddTarget(ctx context.Context, d vsphere.Disk) (diskTarget, error) {
	if j.opts.ProxyVM == "" {
		return nil, errors.New("hotadd needs --proxy-vm (the appliance's own VM)")
	}
	proxy, err := j.conn.FindProxy(ctx, j.opts.ProxyVM)
	if err != nil {
		return nil, err
	}
	added, err := proxy.AttachForWrite(ctx, d.FileName)
	if err != nil {
		return nil, err
	}
	detach := func() error { return proxy.Detach(added.Key) }
	find := j.opts.HotAddDevice
	if find == nil {
		find = DeviceByUUID
	}
	dev, err := find(ctx, proxy.Name(), added)
	if err == nil {
		var f *os.File
		if f, err = os.OpenFile(dev, os.O_RDWR, 0); err == nil {
			var size int64
			if size, err = f.Seek(0, 2); err == nil && size < d.Capacity {
				err = fmt.Errorf("device %s has %d bytes, the disk %d", dev, size, d.Capacity)
			}
			if err == nil {
				return &hotaddTarget{f: f, size: d.Capacity, detach: detach}, nil
			}
			f.Close()
		}
	}
	if derr := detach(); derr != nil {
		j.log.Error("detaching a hot-added disk failed; the next restore detaches it", "disk", d.FileName, "error", derr)
	}
	return nil, err
}
