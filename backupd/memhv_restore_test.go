package backupd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/cairnbackup/cairn/backupd/vsphere"
)

// The restore side of memHV: VMs created from a configuration, power
// state, the restore marker, CBT of the base disk, added disks and the
// hotadd proxy for writing. A restore writes a disk's datastore file
// (DatastoreDirs "mem" -> memHV.dir, a real NBD server or the hotadd
// "device" on it); store puts every disk's bytes there before a restore
// and reload takes them back after it, with CBT seeing what changed.

var _ RestoreHypervisor = (*memHV)(nil)

func (h *memHV) LookupVM(_ context.Context, spec string) (*vsphere.VM, error) {
	return h.lookup("lookup", spec)
}

// vm is the VM of v (by name); an error when it is gone.
func (h *memHV) vm(v *vsphere.VM) (*memVM, error) {
	vm, ok := h.vms[v.Name]
	if !ok {
		return nil, fmt.Errorf("VM %q: %w", v.Name, vsphere.ErrVMNotFound)
	}
	return vm, nil
}

func (h *memHV) CreateVM(_ context.Context, spec vsphere.CreateSpec) (*vsphere.CreatedVM, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	name := spec.Name
	h.call("create %s", name)
	if _, ok := h.vms[name]; ok {
		return nil, fmt.Errorf("VM %q: %w", name, vsphere.ErrVMExists)
	}
	if err := memPlace(spec); err != nil {
		return nil, err
	}
	cfg := spec.Config
	h.nvm++
	vm := &memVM{name: name, cbtSupported: true, snapChangeSeq: map[string]map[string]int{}, cpus: cfg.CPUs,
		uuid: fmt.Sprintf("4200-new-%d", h.nvm), mac: fmt.Sprintf("00:50:56:00:01:%02x", h.nvm), marker: spec.JobID,
		annotation: "cairn: restore in progress, job " + spec.JobID}
	if spec.KeepIdentity {
		vm.uuid = cfg.BIOSUUID
		if len(cfg.NICs) > 0 {
			vm.mac = cfg.NICs[0].MAC
		}
	}
	if len(cfg.NICs) > 0 {
		vm.network = cfg.NICs[0].Network
		if m, ok := spec.Networks[vm.network]; ok {
			vm.network = m
		}
	}
	if err := os.MkdirAll(filepath.Join(h.dir, name), 0o755); err != nil {
		return nil, err
	}
	out := &vsphere.CreatedVM{Datastore: "mem"}
	for _, cd := range cfg.Disks {
		d := vm.addDisk(cd.Name, 0)
		d.data = make([]byte, cd.Capacity)
		d.prov = cd.Provisioning
		if spec.Provisioning != "" {
			d.prov = spec.Provisioning
		}
		if err := os.WriteFile(h.localPath(vm, d), nil, 0o644); err != nil {
			return nil, err
		}
		if err := os.Truncate(h.localPath(vm, d), cd.Capacity); err != nil {
			return nil, err
		}
	}
	h.vms[name] = vm
	out.VM = vm.facts()
	for _, d := range out.VM.Disks {
		out.Disks = append(out.Disks, vsphere.CreatedDisk{Name: d.Name, Disk: d})
	}
	return out, nil
}

func (h *memHV) ImportVM(_ context.Context, spec vsphere.CreateSpec, _ vsphere.UploadFunc) (*vsphere.CreatedVM, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.call("import %s", spec.Name)
	if err := memPlace(spec); err != nil {
		return nil, err
	}
	return nil, errors.New("in memory: no import lease (permission to VApp.Import denied)")
}

// memPlace places a VM as vSphere does, with one host "esx1", datastore
// "mem", no cluster and only the default folder.
func memPlace(spec vsphere.CreateSpec) error {
	switch {
	case spec.Host != "" && spec.Cluster != "":
		return vsphere.ErrHostAndCluster(spec.Host, spec.Cluster)
	case spec.Host != "" && spec.Host != "esx1":
		return &vsphere.PlacementError{Field: "host", Value: spec.Host, Reason: "is no ESXi host of mem"}
	case spec.Cluster != "":
		return &vsphere.PlacementError{Field: "cluster", Value: spec.Cluster, Reason: "not found in mem"}
	case spec.Datastore != "" && spec.Datastore != "mem":
		return &vsphere.PlacementError{Field: "datastore", Value: spec.Datastore, Reason: "is not mounted on host esx1"}
	case spec.Folder != "":
		return &vsphere.PlacementError{Field: "folder", Value: spec.Folder, Reason: "not found in mem"}
	}
	return nil
}

func (h *memHV) FinishRestore(_ context.Context, v *vsphere.VM, annotation string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.call("finish %s", v.Name)
	vm, err := h.vm(v)
	if err != nil {
		return err
	}
	vm.marker, vm.annotation = "", annotation
	return nil
}

func (h *memHV) IncompleteRestores(context.Context) ([]vsphere.IncompleteRestore, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.call("incomplete")
	var out []vsphere.IncompleteRestore
	for _, vm := range h.vms {
		if vm.marker != "" {
			host, _ := os.Hostname()
			pid := vm.markerPID
			if pid == 0 {
				pid = os.Getpid() // a restore running here: left alone
			}
			out = append(out, vsphere.IncompleteRestore{Ref: vm.facts().Ref, Name: vm.name, VMXPath: vm.facts().VMPathName,
				Job: vm.marker, Host: host, PID: pid})
		}
	}
	return out, nil
}

func (h *memHV) DestroyVM(_ context.Context, v *vsphere.VM) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.call("destroy %s", v.Name)
	if h.destroyErr != nil {
		return h.destroyErr
	}
	if _, err := h.vm(v); err != nil {
		return err
	}
	delete(h.vms, v.Name)
	return os.RemoveAll(filepath.Join(h.dir, v.Name))
}

func (h *memHV) RenameVM(_ context.Context, v *vsphere.VM, name string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.call("rename %s %s", v.Name, name)
	vm, err := h.vm(v)
	if err != nil {
		return err
	}
	delete(h.vms, v.Name)
	vm.name = name // its files stay in the old folder, as on a datastore
	h.vms[name] = vm
	return nil
}

func (h *memHV) PoweredOff(_ context.Context, v *vsphere.VM) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	vm, err := h.vm(v)
	if err != nil {
		return false, err
	}
	return !vm.poweredOn, nil
}

func (h *memHV) PowerOff(_ context.Context, v *vsphere.VM) error {
	return h.setPower(v, false)
}

func (h *memHV) PowerOn(_ context.Context, v *vsphere.VM) error {
	return h.setPower(v, true)
}

func (h *memHV) setPower(v *vsphere.VM, on bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.call("power-on=%v %s", on, v.Name)
	vm, err := h.vm(v)
	if err != nil {
		return err
	}
	vm.poweredOn = on
	return nil
}

// ChangedAreasOfBase answers as vSphere does: only for a powered-off VM,
// from the changeId's epoch, every area written since (snapshots taken
// since and the writes after the last one).
func (h *memHV) ChangedAreasOfBase(_ context.Context, v *vsphere.VM, disk vsphere.Disk, since string) ([]vsphere.Extent, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.call("changed-base %s since %q", disk.Name, since)
	vm, err := h.vm(v)
	if err != nil {
		return nil, err
	}
	if vm.poweredOn {
		return nil, errors.New("QueryChangedDiskAreas without a snapshot needs a powered-off VM")
	}
	d := vm.disk(disk.Name)
	epoch, seqStr, _ := strings.Cut(since, "/")
	var from int
	if _, err := fmt.Sscan(seqStr, &from); err != nil || h.rejectChangeIDs || epoch != d.epoch || from > d.seq {
		return nil, &vsphere.ChangeIDRejectedError{ChangeID: since, Err: errors.New("FileFault: invalid changeId")}
	}
	var out []vsphere.Extent
	for s := from + 1; s <= d.seq; s++ {
		out = append(out, d.history[s]...)
	}
	return append(out, d.pending...), nil
}

func (h *memHV) AddDisk(_ context.Context, v *vsphere.VM, spec vsphere.AddDiskSpec) (vsphere.Disk, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.call("add-disk %s %d", v.Name, spec.Capacity)
	vm, err := h.vm(v)
	if err != nil {
		return vsphere.Disk{}, err
	}
	d := vm.addDisk(fmt.Sprintf("scsi0-%d", len(vm.disks)), 0)
	d.data, d.prov = make([]byte, spec.Capacity), spec.Provisioning
	if err := os.MkdirAll(filepath.Join(h.dir, vm.name), 0o755); err != nil {
		return vsphere.Disk{}, err
	}
	if err := os.WriteFile(h.localPath(vm, d), d.data, 0o644); err != nil {
		return vsphere.Disk{}, err
	}
	for _, fd := range vm.facts().Disks {
		if fd.Name == d.name {
			return fd, nil
		}
	}
	return vsphere.Disk{}, errors.New("added disk not found")
}

func (h *memHV) RemoveDisk(_ context.Context, v *vsphere.VM, disk vsphere.Disk) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.call("remove-disk %s %s", v.Name, disk.Name)
	vm, err := h.vm(v)
	if err != nil {
		return err
	}
	vm.removeDisk(disk.Name)
	return nil
}

func (h *memHV) FindRestoreProxy(ctx context.Context, spec string) (RestoreProxy, error) {
	if _, err := h.FindProxy(ctx, spec); err != nil {
		return nil, err
	}
	return h.proxy, nil
}

// AttachForWrite attaches the disk file; the test's HotAddDevice (device)
// maps it to the file itself.
func (p *memProxy) AttachForWrite(ctx context.Context, fileName string) (vsphere.HotAdded, error) {
	return p.Attach(ctx, fileName)
}

// DetachFolder detaches the disks attached from the folder of vmxPath.
func (p *memProxy) DetachFolder(_ context.Context, vmxPath string) ([]string, error) {
	p.hv.mu.Lock()
	defer p.hv.mu.Unlock()
	p.hv.call("detach-folder %s", vmxPath)
	folder := strings.TrimSuffix(vmxPath, path.Base(vmxPath))
	var out []string
	for key, f := range p.attached {
		if strings.HasPrefix(f, folder) {
			out = append(out, f)
			delete(p.attached, key)
		}
	}
	return out, nil
}

// localPath is the datastore file of a disk.
func (h *memHV) localPath(vm *memVM, d *memDisk) string {
	return filepath.Join(h.dir, vm.name, d.name+".vmdk")
}

// store writes every disk's bytes to its datastore file.
func (h *memHV) store() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, vm := range h.vms {
		if err := os.MkdirAll(filepath.Join(h.dir, vm.name), 0o755); err != nil {
			return err
		}
		for _, d := range vm.disks {
			if err := os.WriteFile(h.localPath(vm, d), d.data, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// reload reads every disk's bytes back from its datastore file; CBT sees
// the 4 KiB pieces that changed.
func (h *memHV) reload() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	const piece = 4096
	for _, vm := range h.vms {
		for _, d := range vm.disks {
			data, err := os.ReadFile(h.localPath(vm, d))
			if errors.Is(err, os.ErrNotExist) {
				continue // renamed VM: its folder kept the old name
			}
			if err != nil {
				return err
			}
			for off := 0; off < len(data) && off < len(d.data); off += piece {
				end := min(off+piece, len(data), len(d.data))
				if !bytes.Equal(data[off:end], d.data[off:end]) {
					d.pending = append(d.pending, vsphere.Extent{Offset: int64(off), Length: int64(end - off)})
				}
			}
			d.data = data
		}
	}
	return nil
}
