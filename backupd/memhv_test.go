package backupd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/cairnbackup/cairn/backupd/vmconfig"
	"github.com/cairnbackup/cairn/backupd/vsphere"
)

// memHV is an in-memory Hypervisor: VMs whose disks are byte slices, CBT
// that records the areas written between snapshots, snapshots whose
// frozen disks are files in a local "datastore" (so the file and hotadd
// transports read real files), and knobs for the faults a plan must
// handle. calls records what the job asked, in order.
type memHV struct {
	dir string // the datastore "mem"

	mu    sync.Mutex
	vms   map[string]*memVM
	calls []string
	nsnap int

	rejectChangeIDs bool  // QueryChangedDiskAreas refuses every changeId
	proxyErr        error // FindProxy fails with it
	attachErr       error // the proxy's Attach fails with it
	proxy           *memProxy

	// the restore side (memhv_restore_test.go)
	destroyErr error // DestroyVM fails with it
	nvm        int   // VMs created, for new identities
}

type memVM struct {
	name          string
	cbtSupported  bool
	cbtEnabled    bool
	quiesceFault  bool
	disks         []*memDisk
	snaps         []*vsphere.Snapshot
	snapChangeSeq map[string]map[string]int // snapshot -> disk -> seq

	// identity and devices beside the disks (what a point's configuration
	// records), and the restore side's state
	uuid, mac, network string
	cpus               int
	poweredOn          bool
	marker             string // the restore marker ("" when none)
	markerPID          int    // the process of the marker (0: this one)
	annotation         string
}

type memDisk struct {
	name    string
	key     int32
	data    []byte
	epoch   string // CBT epoch ("" while CBT is off or untracked)
	seq     int
	pending []vsphere.Extent
	history map[int][]vsphere.Extent // seq -> areas written before it
	noCBT   bool                     // the disk gives no changeId (e.g. independent)
	prov    string                   // provisioning ("" is thin)
}

func newMemHV(dir string) *memHV {
	return &memHV{dir: dir, vms: map[string]*memVM{}, proxy: &memProxy{}}
}

// addVM adds a VM with CBT on and disks of the given sizes, filled with
// a pattern in their first half.
func (h *memHV) addVM(name string, sizes ...int) *memVM {
	vm := &memVM{name: name, cbtSupported: true, cbtEnabled: true, snapChangeSeq: map[string]map[string]int{},
		uuid: "4200-" + name, mac: "00:50:56:00:00:01", network: "VM Network", cpus: 2}
	for i, size := range sizes {
		vm.addDisk(fmt.Sprintf("scsi0-%d", i), size)
	}
	h.vms[name] = vm
	return vm
}

func (vm *memVM) addDisk(name string, size int) *memDisk {
	d := &memDisk{name: name, key: int32(2000 + len(vm.disks)), data: make([]byte, size), history: map[int][]vsphere.Extent{}}
	for i := 0; i < size/2; i++ {
		d.data[i] = byte(i*7 + len(vm.disks))
	}
	if vm.cbtEnabled {
		d.epoch = "52 " + name + " e1"
	}
	vm.disks = append(vm.disks, d)
	return d
}

func (vm *memVM) disk(name string) *memDisk {
	for _, d := range vm.disks {
		if d.name == name {
			return d
		}
	}
	panic("no disk " + name)
}

func (vm *memVM) removeDisk(name string) {
	for i, d := range vm.disks {
		if d.name == name {
			vm.disks = append(vm.disks[:i], vm.disks[i+1:]...)
			return
		}
	}
}

// write changes the disk's bytes and lets CBT see it.
func (d *memDisk) write(off int, p []byte) {
	copy(d.data[off:], p)
	d.pending = append(d.pending, vsphere.Extent{Offset: int64(off), Length: int64(len(p))})
}

// resize grows the disk (CBT keeps its epoch; the plan sees the size).
func (d *memDisk) resize(size int) {
	grown := make([]byte, size)
	copy(grown, d.data)
	d.data = grown
}

func (d *memDisk) changeID() string {
	if d.epoch == "" || d.noCBT {
		return ""
	}
	return fmt.Sprintf("%s/%d", d.epoch, d.seq)
}

func (h *memHV) call(format string, args ...any) {
	h.calls = append(h.calls, fmt.Sprintf(format, args...))
}

func (h *memHV) Endpoint() string { return "mem.test" }
func (h *memHV) Server() Server   { return nil }

func (h *memHV) FindVM(_ context.Context, spec string) (*vsphere.VM, error) {
	return h.lookup("find", spec)
}

// lookup is FindVM and LookupVM, recorded as verb.
func (h *memHV) lookup(verb, spec string) (*vsphere.VM, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.call("%s %s", verb, spec)
	vm, ok := h.vms[spec]
	if !ok {
		return nil, fmt.Errorf("VM %q: %w", spec, vsphere.ErrVMNotFound)
	}
	return vm.facts(), nil
}

// facts is the VM as a Hypervisor describes it, with a configuration of
// one pvscsi controller, its disks and a NIC (what a backup records).
func (vm *memVM) facts() *vsphere.VM {
	out := &vsphere.VM{Ref: types.ManagedObjectReference{Type: "VirtualMachine", Value: "vm-" + vm.name}, Name: vm.name,
		HardwareVersion: "vmx-19", CBTSupported: vm.cbtSupported, CBTEnabled: vm.cbtEnabled, VMPathName: "[mem] " + vm.name + "/" + vm.name + ".vmx"}
	hw := types.VirtualHardware{NumCPU: int32(vm.cpus), NumCoresPerSocket: 1, MemoryMB: 1024, Device: []types.BaseVirtualDevice{
		&types.ParaVirtualSCSIController{VirtualSCSIController: types.VirtualSCSIController{VirtualController: types.VirtualController{
			BusNumber: 0, VirtualDevice: types.VirtualDevice{Key: 1000}}}},
		&types.VirtualVmxnet3{VirtualVmxnet: types.VirtualVmxnet{VirtualEthernetCard: types.VirtualEthernetCard{
			VirtualDevice: types.VirtualDevice{Key: 4000, Backing: &types.VirtualEthernetCardNetworkBackingInfo{
				VirtualDeviceDeviceBackingInfo: types.VirtualDeviceDeviceBackingInfo{DeviceName: vm.network}}},
			MacAddress: vm.mac, AddressType: "assigned"}}},
	}}
	for _, d := range vm.disks {
		out.Disks = append(out.Disks, vsphere.Disk{Name: d.name, Key: d.key, Capacity: int64(len(d.data)), ChangeID: d.changeID(),
			FileName: d.fileName(vm)})
		var unit int32
		fmt.Sscanf(d.name, "scsi0-%d", &unit)
		hw.Device = append(hw.Device, &types.VirtualDisk{CapacityInBytes: int64(len(d.data)), VirtualDevice: types.VirtualDevice{
			Key: d.key, ControllerKey: 1000, UnitNumber: &unit,
			Backing: &types.VirtualDiskFlatVer2BackingInfo{VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: d.fileName(vm)},
				ThinProvisioned: types.NewBool(d.prov == "" || d.prov == "thin"), EagerlyScrub: types.NewBool(d.prov == "eager")}}})
	}
	out.Config = &types.VirtualMachineConfigInfo{Name: vm.name, Uuid: vm.uuid, InstanceUuid: "5000-" + vm.uuid, GuestId: "otherLinux64Guest",
		Version: "vmx-19", Firmware: "bios", Files: types.VirtualMachineFileInfo{VmPathName: out.VMPathName}, Hardware: hw, Annotation: vm.annotation}
	for _, s := range vm.snaps {
		out.Snapshots = append(out.Snapshots, vsphere.SnapshotRef{Ref: s.Ref, Name: s.Name})
	}
	return out
}

// fileName is the disk's datastore path: its bytes live in that file of
// the datastore directory while a restore writes it (memHV.store).
func (d *memDisk) fileName(vm *memVM) string { return "[mem] " + vm.name + "/" + d.name + ".vmdk" }

func (h *memHV) EnableCBT(_ context.Context, v *vsphere.VM) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	vm := h.vms[v.Name]
	h.call("enable-cbt")
	if !vm.cbtSupported {
		return false, fmt.Errorf("VM %s: %w", vm.name, vsphere.ErrCBTUnsupported)
	}
	if vm.cbtEnabled {
		return false, nil
	}
	vm.cbtEnabled = true
	for _, d := range vm.disks {
		d.epoch, d.seq, d.pending, d.history = "52 "+d.name+" e1", 0, nil, map[int][]vsphere.Extent{}
	}
	return true, nil
}

func (h *memHV) CreateSnapshot(_ context.Context, v *vsphere.VM, name string, quiesce bool) (*vsphere.Snapshot, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	vm := h.vms[v.Name]
	h.call("snapshot quiesce=%v", quiesce)
	if quiesce && vm.quiesceFault {
		return nil, &vsphere.QuiesceFaultError{VM: vm.name, Err: errors.New("ApplicationQuiesceFault: the guest could not be quiesced")}
	}
	h.nsnap++
	snap := &vsphere.Snapshot{Ref: types.ManagedObjectReference{Type: "VirtualMachineSnapshot", Value: fmt.Sprintf("snapshot-%d", h.nsnap)},
		Name: name, Consistency: vsphere.ConsistencyQuiesced}
	if !quiesce {
		snap.Consistency = vsphere.ConsistencyCrash
	}
	seqs := map[string]int{}
	for _, d := range vm.disks {
		if d.epoch != "" {
			d.seq++
			d.history[d.seq], d.pending = d.pending, nil
		}
		seqs[d.name] = d.seq
		file := fmt.Sprintf("%s/%s-%s.img", vm.name, snap.Ref.Value, d.name)
		if err := os.MkdirAll(filepath.Join(h.dir, vm.name), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(h.dir, file), d.data, 0o644); err != nil {
			return nil, err
		}
		snap.Disks = append(snap.Disks, vsphere.Disk{Name: d.name, Key: d.key, Capacity: int64(len(d.data)), ChangeID: d.changeID(), FileName: "[mem] " + file})
	}
	vm.snapChangeSeq[snap.Ref.Value] = seqs
	vm.snaps = append(vm.snaps, snap)
	return snap, nil
}

func (h *memHV) RemoveSnapshot(v *vsphere.VM, snap *vsphere.Snapshot) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	vm := h.vms[v.Name]
	h.call("remove %s", snap.Name)
	for i, s := range vm.snaps {
		if s.Ref == snap.Ref {
			vm.snaps = append(vm.snaps[:i], vm.snaps[i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("no snapshot %s", snap.Ref.Value)
}

func (h *memHV) RemoveStaleSnapshots(_ context.Context, v *vsphere.VM) ([]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	vm := h.vms[v.Name]
	var removed []string
	kept := vm.snaps[:0]
	for _, s := range vm.snaps {
		if strings.HasPrefix(s.Name, vsphere.SnapshotPrefix) {
			removed = append(removed, s.Name)
			continue
		}
		kept = append(kept, s)
	}
	vm.snaps = kept
	return removed, nil
}

func (h *memHV) ChangedAreas(_ context.Context, v *vsphere.VM, snap *vsphere.Snapshot, disk vsphere.Disk, since string) ([]vsphere.Extent, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	vm := h.vms[v.Name]
	h.call("changed %s since %q", disk.Name, since)
	d := vm.disk(disk.Name)
	at := vm.snapChangeSeq[snap.Ref.Value][disk.Name]
	if since == "*" {
		// every allocated area: the non-zero 64 KiB pieces of the frozen disk
		data, err := os.ReadFile(filepath.Join(h.dir, strings.TrimPrefix(disk.FileName, "[mem] ")))
		if err != nil {
			return nil, err
		}
		var out []vsphere.Extent
		const piece = 64 << 10
		for off := 0; off < len(data); off += piece {
			end := min(off+piece, len(data))
			if !bytes.Equal(data[off:end], make([]byte, end-off)) {
				out = append(out, vsphere.Extent{Offset: int64(off), Length: int64(end - off)})
			}
		}
		return out, nil
	}
	epoch, seqStr, _ := strings.Cut(since, "/")
	var from int
	if _, err := fmt.Sscan(seqStr, &from); err != nil || h.rejectChangeIDs || epoch != d.epoch || from > at {
		return nil, &vsphere.ChangeIDRejectedError{ChangeID: since, Err: errors.New("FileFault: invalid changeId")}
	}
	var out []vsphere.Extent
	for s := from + 1; s <= at; s++ {
		out = append(out, d.history[s]...)
	}
	return out, nil
}

// VMPlacement: the in-memory platform has no inventory to record.
func (h *memHV) VMPlacement(context.Context, *vsphere.VM) (*vmconfig.Placement, error) {
	return nil, errors.New("memhv: no inventory")
}

func (h *memHV) DownloadFile(context.Context, *vsphere.VM, string, int64) ([]byte, error) {
	return nil, errors.New("no files in memory")
}

func (h *memHV) LocalDatastores(context.Context, vsphere.DatastoreDirs) (vsphere.DatastoreDirs, error) {
	return vsphere.DatastoreDirs{"mem": h.dir}, nil
}

func (h *memHV) FindProxy(_ context.Context, spec string) (Proxy, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.call("find-proxy %s", spec)
	if h.proxyErr != nil {
		return nil, h.proxyErr
	}
	h.proxy.hv = h
	return h.proxy, nil
}

// memProxy attaches disks by remembering them; the test's HotAddDevice
// maps an attached disk to its local file.
type memProxy struct {
	hv       *memHV
	attached map[int32]string
	next     int32
}

func (p *memProxy) Name() string { return "proxy" }

func (p *memProxy) Attach(_ context.Context, fileName string) (vsphere.HotAdded, error) {
	p.hv.mu.Lock()
	defer p.hv.mu.Unlock()
	p.hv.call("attach %s", fileName)
	if p.hv.attachErr != nil {
		return vsphere.HotAdded{}, p.hv.attachErr
	}
	if p.attached == nil {
		p.attached = map[int32]string{}
	}
	p.next++
	p.attached[p.next] = fileName
	return vsphere.HotAdded{Key: p.next, FileName: fileName, UUID: fmt.Sprintf("uuid-%d", p.next)}, nil
}

func (p *memProxy) Detach(key int32) error {
	p.hv.mu.Lock()
	defer p.hv.mu.Unlock()
	p.hv.call("detach %s", p.attached[key])
	delete(p.attached, key)
	return nil
}

func (p *memProxy) CleanupStale(context.Context, *vsphere.VM) ([]string, error) { return nil, nil }

// device is a HotAddDeviceFunc: the attached disk's frozen file.
func (h *memHV) device(_ context.Context, _ string, added vsphere.HotAdded) (string, error) {
	return vsphere.DatastoreDirs{"mem": h.dir}.LocalPath(added.FileName)
}

var _ Hypervisor = (*memHV)(nil)
