package vsphere

import (
	"context"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"
)

// Proxy is the backup appliance's own VM, to which HotAdd attaches
// snapshot disks.
type Proxy struct {
	vm *VM
}

// FindProxy selects the proxy VM (by name, path or MoRef). Unlike FindVM it
// accepts a VM without disks.
func (c *Conn) FindProxy(ctx context.Context, spec string) (*Proxy, error) {
	ref, err := c.resolveVM(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("proxy VM: %w", err)
	}
	vm, err := c.LoadVM(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("proxy VM: %w", err)
	}
	return &Proxy{vm: vm}, nil
}

// Name is the proxy VM's name.
func (p *Proxy) Name() string { return p.vm.Name }

// HotAdded is a disk attached to the proxy.
type HotAdded struct {
	Key      int32
	FileName string
	UUID     string
}

// Attach hot-adds an existing disk file (a snapshot's frozen disk) to the
// proxy, non-persistent, on its first SCSI controller, and returns the new
// device.
func (p *Proxy) Attach(ctx context.Context, fileName string) (HotAdded, error) {
	return p.attach(ctx, fileName, types.VirtualDiskModeIndependent_nonpersistent)
}

func (p *Proxy) attach(ctx context.Context, fileName string, mode types.VirtualDiskMode) (HotAdded, error) {
	p.vm.conn.proxyMu.Lock()
	defer p.vm.conn.proxyMu.Unlock()
	obj := p.vm.Object()
	devices, err := obj.Device(ctx)
	if err != nil {
		return HotAdded{}, fmt.Errorf("hot-add %s: devices of proxy %s: %w", fileName, p.vm.Name, err)
	}
	ctrl, err := devices.FindSCSIController("")
	if err != nil {
		return HotAdded{}, fmt.Errorf("hot-add %s: proxy %s has no SCSI controller: %w", fileName, p.vm.Name, err)
	}
	disk := &types.VirtualDisk{VirtualDevice: types.VirtualDevice{
		Key: -1,
		Backing: &types.VirtualDiskFlatVer2BackingInfo{
			VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: fileName},
			DiskMode:                     string(mode),
		},
	}}
	devices.AssignController(disk, ctrl)
	// Once the reconfigure is sent the disk may end up attached whatever
	// happens to ctx: wait for it and learn its key without ctx's
	// cancellation, so that the caller can detach it. A disk left on the
	// proxy keeps the snapshot's file locked and the snapshot unremovable.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
	defer cancel()
	if err := obj.AddDevice(actx, disk); err != nil {
		return HotAdded{}, fmt.Errorf("hot-add %s to proxy %s: %w", fileName, p.vm.Name, err)
	}
	after, err := obj.Device(actx)
	if err != nil {
		return HotAdded{}, fmt.Errorf("hot-add %s: devices of proxy %s: %w", fileName, p.vm.Name, err)
	}
	for _, d := range DisksOf(after) {
		if d.FileName == fileName {
			return HotAdded{Key: d.Key, FileName: fileName, UUID: d.UUID}, nil
		}
	}
	return HotAdded{}, fmt.Errorf("hot-add %s: the disk does not appear on proxy %s", fileName, p.vm.Name)
}

// Detach removes a hot-added disk from the proxy without deleting its
// file. It uses its own context so it also runs after a cancellation.
func (p *Proxy) Detach(key int32) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	p.vm.conn.proxyMu.Lock()
	defer p.vm.conn.proxyMu.Unlock()
	obj := p.vm.Object()
	devices, err := obj.Device(ctx)
	if err != nil {
		return fmt.Errorf("detach disk %d from proxy %s: %w", key, p.vm.Name, err)
	}
	dev := devices.FindByKey(key)
	if dev == nil {
		return nil
	}
	if err := obj.RemoveDevice(ctx, true, dev); err != nil {
		return fmt.Errorf("detach disk %d from proxy %s: %w", key, p.vm.Name, err)
	}
	return nil
}

// snapshotDiskName matches the disk files of snapshots ("vm-000001.vmdk").
var snapshotDiskName = regexp.MustCompile(`-[0-9]{6}\.vmdk$`)

// CleanupStale detaches disks that a killed backup of vm left attached:
// every snapshot disk ("-00000N.vmdk") of the proxy that lives in vm's
// folder. The caller must hold vm's job lock, so that no live job of that
// VM has a disk attached; disks of other VMs are left alone.
func (p *Proxy) CleanupStale(ctx context.Context, vm *VM) ([]string, error) {
	obj := p.vm.Object()
	devices, err := obj.Device(ctx)
	if err != nil {
		return nil, fmt.Errorf("devices of proxy %s: %w", p.vm.Name, err)
	}
	own, src := dsFolder(p.vm.VMPathName), dsFolder(vm.VMPathName)
	if src == "" || src == own {
		return nil, nil
	}
	var removed []string
	var errs []error
	for _, d := range DisksOf(devices) {
		if dsFolder(d.FileName) != src || !snapshotDiskName.MatchString(d.FileName) {
			continue
		}
		p.vm.conn.log.Warn("detaching a disk an interrupted cairn run left on the proxy", "proxy", p.vm.Name, "disk", d.FileName)
		if err := p.Detach(d.Key); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, d.FileName)
	}
	return removed, errors.Join(errs...)
}

// dsFolder is "[ds] folder" of "[ds] folder/file.vmdk".
func dsFolder(dsPath string) string {
	var p object.DatastorePath
	if !p.FromString(dsPath) {
		return ""
	}
	dir := path.Dir(strings.TrimSuffix(p.Path, "/"))
	if strings.HasSuffix(p.Path, "/") || !strings.Contains(p.Path, ".") {
		dir = strings.TrimSuffix(p.Path, "/")
	}
	return "[" + p.Datastore + "] " + dir
}
