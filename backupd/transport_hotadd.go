package backupd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cairnbackup/cairn/backupd/copier"
	"github.com/cairnbackup/cairn/backupd/vsphere"
)

// HotAddDeviceFunc finds the local device of a disk hot-added to the proxy.
type HotAddDeviceFunc func(ctx context.Context, proxy string, disk vsphere.HotAdded) (string, error)

// DeviceByUUID finds a hot-added disk under /dev/disk/by-id by its UUID
// (VMware shows it as the disk's WWN/serial when disk.EnableUUID is set on
// the proxy).
func DeviceByUUID(_ context.Context, _ string, disk vsphere.HotAdded) (string, error) {
	id := strings.ToLower(strings.ReplaceAll(disk.UUID, "-", ""))
	if id == "" {
		return "", fmt.Errorf("hot-added disk %s has no UUID", disk.FileName)
	}
	entries, err := os.ReadDir("/dev/disk/by-id")
	if err != nil {
		return "", fmt.Errorf("find hot-added disk %s: %w", disk.FileName, err)
	}
	for _, e := range entries {
		if strings.Contains(strings.ToLower(e.Name()), id) && !strings.Contains(e.Name(), "-part") {
			return filepath.EvalSymlinks(filepath.Join("/dev/disk/by-id", e.Name()))
		}
	}
	return "", fmt.Errorf("hot-added disk %s (uuid %s) has no device under /dev/disk/by-id (is disk.EnableUUID set on the proxy VM?)", disk.FileName, disk.UUID)
}

// openHotAdd attaches the frozen disk to the proxy VM and opens its
// device; closing the source detaches it.
func openHotAdd(ctx context.Context, j *vmJob, d vsphere.Disk) (source, error) {
	if j.proxy == nil {
		return nil, fmt.Errorf("hotadd needs --proxy-vm")
	}
	added, err := j.proxy.Attach(ctx, d.FileName)
	if err != nil {
		return nil, err
	}
	detach := func() error { return j.proxy.Detach(added.Key) }
	find := j.opts.HotAddDevice
	if find == nil {
		find = DeviceByUUID
	}
	dev, err := find(ctx, j.proxy.Name(), added)
	if err == nil {
		var f *os.File
		var size int64
		if f, size, err = copier.OpenSource(dev); err == nil {
			if size < d.Capacity {
				f.Close()
				err = fmt.Errorf("device %s has %d bytes, the disk %d", dev, size, d.Capacity)
			} else {
				return &fileSource{File: f, size: d.Capacity, onClose: detach}, nil
			}
		}
	}
	if derr := detach(); derr != nil {
		j.log.Error("detaching a hot-added disk failed; the next run retries", "disk", d.FileName, "error", derr)
	}
	return nil, err
}
