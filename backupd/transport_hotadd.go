package backupd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/backupd/source"
	"github.com/cairnbackup/cairn/backupd/vsphere"
)

// HotAddDeviceFunc finds the local device of a disk hot-added to the proxy.
type HotAddDeviceFunc func(ctx context.Context, proxy string, disk vsphere.HotAdded) (string, error)

// DeviceByUUID finds a hot-added disk under /dev/disk/by-id by its UUID
// (VMware shows it as the disk's WWN/serial, wwn-0x6000c29..., when
// disk.EnableUUID is set on the proxy). The reconfigure task can end
// before the guest's kernel and udev have made the device, so it waits up
// to 60 s, and asks the SCSI hosts to rescan if the disk has not shown up
// after 5 s (as when the guest missed the hot-plug event).
func DeviceByUUID(ctx context.Context, _ string, disk vsphere.HotAdded) (string, error) {
	return findDevice(ctx, deviceSearch{byID: "/dev/disk/by-id", scsiHosts: "/sys/class/scsi_host", rescanAfter: 5 * time.Second, timeout: 60 * time.Second}, disk)
}

// deviceSearch says where and how long to look for a hot-added disk.
type deviceSearch struct {
	byID        string // /dev/disk/by-id
	scsiHosts   string // /sys/class/scsi_host: each host's "scan" file
	rescanAfter time.Duration
	timeout     time.Duration
}

func findDevice(ctx context.Context, s deviceSearch, disk vsphere.HotAdded) (string, error) {
	id := strings.ToLower(strings.ReplaceAll(disk.UUID, "-", ""))
	if id == "" {
		return "", fmt.Errorf("hot-added disk %s has no UUID", disk.FileName)
	}
	start := time.Now()
	rescanned := false
	for {
		entries, err := os.ReadDir(s.byID)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("find hot-added disk %s: %w", disk.FileName, err)
		}
		for _, e := range entries {
			name := strings.ToLower(e.Name())
			if strings.Contains(name, id) && !strings.Contains(name, "-part") {
				return filepath.EvalSymlinks(filepath.Join(s.byID, e.Name()))
			}
		}
		waited := time.Since(start)
		if waited >= s.timeout {
			return "", fmt.Errorf("hot-added disk %s (uuid %s) has no device under %s after %s (is disk.EnableUUID set on the proxy VM?)",
				disk.FileName, disk.UUID, s.byID, s.timeout)
		}
		if !rescanned && waited >= s.rescanAfter {
			rescanned = true
			rescanSCSI(s.scsiHosts)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("find hot-added disk %s: %w", disk.FileName, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// rescanSCSI asks every SCSI host to look for new devices ("- - -": all
// channels, targets and LUNs). Errors are ignored: this is a nudge.
func rescanSCSI(hostsDir string) {
	hosts, _ := os.ReadDir(hostsDir)
	for _, h := range hosts {
		_ = os.WriteFile(filepath.Join(hostsDir, h.Name(), "scan"), []byte("- - -\n"), 0)
	}
}

// HotAddProxy is the proxy VM that HotAdd attaches disks to
// (*vsphere.Proxy).
type HotAddProxy interface {
	Name() string
	// Attach hot-adds a disk file; Detach removes the device again.
	Attach(ctx context.Context, fileName string) (vsphere.HotAdded, error)
	Detach(key int32) error
}

// HotAddTransport attaches the frozen disk to the proxy VM and reads its
// device; closing the source detaches it.
type HotAddTransport struct {
	Proxy HotAddProxy // nil: no --proxy-vm given
	// Device finds the attached disk's local device (default DeviceByUUID).
	Device HotAddDeviceFunc
	Logger *slog.Logger
}

// Name is "hotadd".
func (*HotAddTransport) Name() string { return TransportHotAdd }

// Open attaches the disk and opens its device.
func (t *HotAddTransport) Open(ctx context.Context, d DiskRef) (source.Source, error) {
	if t.Proxy == nil {
		return nil, ErrNoProxyVM
	}
	return openAttached(ctx, t.Proxy.Name(), t.Proxy.Attach, t.Proxy.Detach, d.Disk.FileName, t.Device, t.Logger,
		func(dev string, detach func() error) (source.Source, error) {
			return source.OpenFile(dev, source.FileOptions{Size: d.Disk.Capacity, Transport: TransportHotAdd, OnClose: detach})
		})
}

// openAttached attaches fileName to the proxy, finds its local device
// (find, default DeviceByUUID) and opens it with open, which owns detach
// from then on. When any step fails the disk is detached again; a failed
// detach is logged (the next run detaches it). Backups and restores both
// open hot-added disks through it.
func openAttached[T any](ctx context.Context, proxy string, attach func(context.Context, string) (vsphere.HotAdded, error),
	detachKey func(int32) error, fileName string, find HotAddDeviceFunc, log *slog.Logger,
	open func(dev string, detach func() error) (T, error)) (T, error) {
	var zero T
	added, err := attach(ctx, fileName)
	if err != nil {
		return zero, err
	}
	detach := func() error { return detachKey(added.Key) }
	if find == nil {
		find = DeviceByUUID
	}
	dev, err := find(ctx, proxy, added)
	if err == nil {
		var out T
		if out, err = open(dev, detach); err == nil {
			return out, nil
		}
	}
	if derr := detach(); derr != nil {
		if log == nil {
			log = slog.Default()
		}
		log.Error("detaching a hot-added disk failed; the next run detaches it", "disk", fileName, "error", derr)
	}
	return zero, err
}
