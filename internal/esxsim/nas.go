package esxsim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"
)

// NFS datastores (HostDatastoreSystem.CreateNasDatastore), made to behave
// like ESXi's NFSv3 client where instant recovery cares:
//
//   - CreateNasDatastore asks the portmapper of RemoteHost (port 111, or
//     SetNFSPortmapper's address) where NFS version 3 and MOUNT version 3
//     answer over TCP, mounts RemotePath through the NFS port with a real
//     NFSv3 client (go-nfs-client) and fails as ESXi does ("NFS mount
//     HOST:PATH failed: ...", a PlatformConfigFault) when it cannot.
//     vcsim needs a local directory per datastore: the export's top-level
//     files are mirrored there (small files copied, large ones as sparse
//     files of their size) so that vcsim's file checks see them; the
//     bytes that matter are read through NFS, below.
//   - PowerOnVM_Task of a VM with a disk on an NFS datastore reads the
//     disk's descriptor and the first and last 64 KiB of its flat extent
//     through NFS first (a VM whose datastore's server is gone does not
//     power on: FileNotFound with the disk's name).
//   - RelocateVM_Task of such a VM to another datastore (Storage vMotion)
//     copies every disk on an NFS datastore through NFS into the target
//     datastore's directory (VMNAME/FILE.vmdk and FILE-flat.vmdk, holes
//     kept), moves the .vmx and .nvram, points the disks' backings there
//     and deletes the source disk files through NFS, as ESXi does.
//   - RemoveDatastore unmounts: refused with ResourceInUse while a VM
//     uses the datastore; the mirror directory is removed.
//   - RefuseNAS makes the next mounts fail (a host that cannot reach the
//     server, or a firewall).

// nasState is the simulator's NFS datastores.
type nasState struct {
	mu      sync.Mutex
	portmap string
	refuse  string
	mounts  map[string]*nasMount // by datastore name
}

// nasMount is one mounted NFS datastore.
type nasMount struct {
	name, remoteHost, remotePath, dir string
	ref                               types.ManagedObjectReference
}

// NASDatastore describes a mounted NFS datastore.
type NASDatastore struct {
	Name, RemoteHost, RemotePath string
}

func (s *Sim) nasLocked() *nasState {
	if s.nas == nil {
		s.nas = &nasState{mounts: map[string]*nasMount{}}
	}
	return s.nas
}

func (s *Sim) nasState() *nasState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nasLocked()
}

// SetNFSPortmapper makes NFS mounts ask the portmapper at addr
// ("HOST:PORT") instead of REMOTEHOST:111 (tests cannot count on port
// 111 being free).
func (s *Sim) SetNFSPortmapper(addr string) {
	n := s.nasState()
	n.mu.Lock()
	n.portmap = addr
	n.mu.Unlock()
}

// RefuseNAS makes CreateNasDatastore fail with reason (as a host that
// cannot reach the NFS server does); "" lets mounts through again.
func (s *Sim) RefuseNAS(reason string) {
	n := s.nasState()
	n.mu.Lock()
	n.refuse = reason
	n.mu.Unlock()
}

// NASDatastores lists the mounted NFS datastores, by name.
func (s *Sim) NASDatastores() []NASDatastore {
	n := s.nasState()
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []NASDatastore
	for _, m := range n.mounts {
		out = append(out, NASDatastore{Name: m.name, RemoteHost: m.remoteHost, RemotePath: m.remotePath})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// nfsMount mounts host:path with the NFSv3 client; done unmounts.
func (s *Sim) nfsMount(host, path string) (t *nfsc.Target, done func(), err error) {
	n := s.nasState()
	n.mu.Lock()
	pmAddr := n.portmap
	n.mu.Unlock()
	if pmAddr == "" {
		pmAddr = net.JoinHostPort(host, "111")
	}
	pc, err := DialRPC(pmAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("Unable to connect to NFS server (portmapper %s: %v)", pmAddr, err)
	}
	pm := &rpc.Portmapper{Client: pc}
	nport, err := pm.Getport(rpc.Mapping{Prog: nfsc.Nfs3Prog, Vers: nfsc.Nfs3Vers, Prot: rpc.IPProtoTCP})
	var mport int
	if err == nil {
		mport, err = pm.Getport(rpc.Mapping{Prog: nfsc.MountProg, Vers: nfsc.MountVers, Prot: rpc.IPProtoTCP})
	}
	pc.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("Unable to connect to NFS server (portmapper: %v)", err)
	}
	if nport == 0 || mport == 0 {
		return nil, nil, errors.New("NFS version 3 or MOUNT version 3 is not registered with the portmapper")
	}
	nc, err := DialRPC(net.JoinHostPort(host, fmt.Sprint(nport)))
	if err != nil {
		return nil, nil, fmt.Errorf("Unable to connect to NFS server: %v", err)
	}
	m := &nfsc.Mount{Client: nc}
	t, err = m.Mount(path, rpc.AuthNull)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("mount of %s refused: %v", path, err)
	}
	return t, func() { _ = m.Unmount(); nc.Close() }, nil
}

// CreateNasDatastore mounts an NFS export (see the comment at the top).
func (r *router) CreateNasDatastore(ctx *simulator.Context, req *types.CreateNasDatastore) soap.HasFault {
	s := r.sim
	body := &methods.CreateNasDatastoreBody{}
	fail := func(msg string) soap.HasFault {
		text := fmt.Sprintf("NFS mount %s:%s failed: %s", req.Spec.RemoteHost, req.Spec.RemotePath, msg)
		body.Fault_ = simulator.Fault(text, &types.PlatformConfigFault{Text: text})
		return body
	}
	dss, ok := ctx.Map.Get(req.This).(*simulator.HostDatastoreSystem)
	if !ok {
		body.Fault_ = simulator.Fault("", &types.ManagedObjectNotFound{Obj: req.This})
		return body
	}
	n := s.nasState()
	n.mu.Lock()
	refuse := n.refuse
	n.mu.Unlock()
	if refuse != "" {
		return fail(refuse)
	}
	name := req.Spec.LocalPath
	if name == "" || strings.ContainsAny(name, "/\\") {
		body.Fault_ = simulator.Fault("A specified parameter was not correct: spec.localPath", &types.InvalidArgument{InvalidProperty: "spec.localPath"})
		return body
	}
	if req.Spec.Type != "" && req.Spec.Type != string(types.HostFileSystemVolumeFileSystemTypeNFS) {
		return fail("only NFS version 3 is simulated")
	}
	t, done, err := s.nfsMount(req.Spec.RemoteHost, req.Spec.RemotePath)
	if err != nil {
		return fail(err.Error())
	}
	defer done()
	base, err := os.MkdirTemp("", "esxsim-nas-")
	if err != nil {
		return fail(err.Error())
	}
	dir := filepath.Join(base, name)
	if err := os.Mkdir(dir, 0o755); err == nil {
		err = mirror(t, dir)
	}
	if err != nil {
		os.RemoveAll(base)
		return fail(err.Error())
	}
	local := *req
	local.Spec.LocalPath = dir
	var res soap.HasFault
	ctx.WithLock(dss, func() { res = dss.CreateNasDatastore(ctx, &local) })
	b := res.(*methods.CreateNasDatastoreBody)
	if b.Fault_ != nil || b.Res == nil {
		os.RemoveAll(base)
		return b
	}
	n.mu.Lock()
	n.mounts[name] = &nasMount{name: name, remoteHost: req.Spec.RemoteHost, remotePath: req.Spec.RemotePath, dir: dir, ref: b.Res.Returnval}
	n.mu.Unlock()
	s.log.Info("NFS datastore mounted", "datastore", name, "remote", req.Spec.RemoteHost+":"+req.Spec.RemotePath)
	return b
}

// mirror makes dir show the export's top-level files for vcsim.
func mirror(t *nfsc.Target, dir string) error {
	list, err := t.ReadDirPlus("/")
	if err != nil {
		return fmt.Errorf("list the export: %v", err)
	}
	for _, e := range list {
		if e.Name() == "." || e.Name() == ".." || e.IsDir() {
			continue
		}
		p := filepath.Join(dir, filepath.Base(e.Name()))
		if e.Size() > 1<<20 {
			f, err := os.Create(p)
			if err == nil {
				err = f.Truncate(e.Size())
				f.Close()
			}
			if err != nil {
				return err
			}
			continue
		}
		b, err := readNFS(t, "/"+e.Name(), 0, e.Size())
		if err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// readNFS reads n bytes at off of a file on the export.
func readNFS(t *nfsc.Target, path string, off, n int64) ([]byte, error) {
	f, err := t.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s over NFS: %v", path, err)
	}
	defer f.Close()
	b := make([]byte, n)
	got, err := f.ReadAt(b, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read %s over NFS: %v", path, err)
	}
	if int64(got) < n {
		return nil, fmt.Errorf("read %s over NFS: %d of %d bytes at %d", path, got, n, off)
	}
	return b, nil
}

// nasDisk is a disk of a VM on an NFS datastore.
type nasDisk struct {
	disk *types.VirtualDisk
	m    *nasMount
	file string // path on the export ("/disk0.vmdk")
}

var dsPathRE = regexp.MustCompile(`^\[([^\]]+)\] ?(.*)$`)

// nasDisks lists the VM's disks on NFS datastores.
func (s *Sim) nasDisks(vm *simulator.VirtualMachine) []nasDisk {
	n := s.nasState()
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []nasDisk
	for _, d := range vm.Config.Hardware.Device {
		disk, ok := d.(*types.VirtualDisk)
		if !ok {
			continue
		}
		b, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		if !ok {
			continue
		}
		m := dsPathRE.FindStringSubmatch(b.FileName)
		if m == nil || n.mounts[m[1]] == nil {
			continue
		}
		out = append(out, nasDisk{disk: disk, m: n.mounts[m[1]], file: "/" + m[2]})
	}
	return out
}

var extentRE = regexp.MustCompile(`(?m)^RW (\d+) (?:VMFS|FLAT) "([^"]+)"`)

// flatOf reads a descriptor over NFS: the flat extent's path and size.
func flatOf(t *nfsc.Target, desc string) (string, int64, error) {
	fi, _, err := t.Lookup(desc)
	if err != nil {
		return "", 0, fmt.Errorf("%s: %v", desc, err)
	}
	b, err := readNFS(t, desc, 0, fi.Size())
	if err != nil {
		return "", 0, err
	}
	m := extentRE.FindSubmatch(b)
	if m == nil {
		return "", 0, fmt.Errorf("%s: no flat extent in the descriptor", desc)
	}
	var sectors int64
	fmt.Sscan(string(m[1]), &sectors)
	return filepath.Join(filepath.Dir(desc), string(m[2])), sectors * 512, nil
}

// PowerOnVMTask reads the disks on NFS datastores first (see top).
func (r *router) PowerOnVMTask(ctx *simulator.Context, req *types.PowerOnVM_Task) soap.HasFault {
	return r.vmCall(ctx, req.This, func(h *vmHandler) soap.HasFault {
		for _, d := range r.sim.nasDisks(h.VirtualMachine) {
			if err := r.sim.probeDisk(d); err != nil {
				return &methods.PowerOnVM_TaskBody{Res: &types.PowerOnVM_TaskResponse{Returnval: failedTask(ctx, h.Self, "powerOn",
					&types.FileNotFound{FileFault: types.FileFault{File: fmt.Sprintf("[%s] %s", d.m.name, strings.TrimPrefix(d.file, "/")),
						VimFault: types.VimFault{MethodFault: types.MethodFault{FaultMessage: []types.LocalizableMessage{{Key: "msg.disk.noBackEnd",
							Message: fmt.Sprintf("Cannot open the disk '[%s] %s' or one of the snapshot disks it depends on: %v", d.m.name, strings.TrimPrefix(d.file, "/"), err)}}}}}})}}
			}
		}
		return h.VirtualMachine.PowerOnVMTask(ctx, req)
	})
}

func (s *Sim) probeDisk(d nasDisk) error {
	t, done, err := s.nfsMount(d.m.remoteHost, d.m.remotePath)
	if err != nil {
		return err
	}
	defer done()
	flat, size, err := flatOf(t, d.file)
	if err != nil {
		return err
	}
	n := min(size, 64<<10)
	if _, err := readNFS(t, flat, 0, n); err != nil {
		return err
	}
	_, err = readNFS(t, flat, size-n, n)
	return err
}

// RelocateVMTask is Storage vMotion off NFS datastores (see top).
func (r *router) RelocateVMTask(ctx *simulator.Context, req *types.RelocateVM_Task) soap.HasFault {
	return r.vmCall(ctx, req.This, func(h *vmHandler) soap.HasFault {
		disks := r.sim.nasDisks(h.VirtualMachine)
		if len(disks) == 0 || req.Spec.Datastore == nil {
			return h.VirtualMachine.RelocateVMTask(ctx, req)
		}
		if err := r.sim.moveOffNAS(ctx, h.VirtualMachine, disks, *req.Spec.Datastore); err != nil {
			return &methods.RelocateVM_TaskBody{Res: &types.RelocateVM_TaskResponse{Returnval: failedTask(ctx, h.Self, "relocateVm",
				&types.CannotAccessFile{FileFault: types.FileFault{File: err.Error(), VimFault: types.VimFault{MethodFault: types.MethodFault{
					FaultMessage: []types.LocalizableMessage{{Key: "msg.svmotion.fail", Message: "Storage vMotion failed: " + err.Error()}}}}}})}}
		}
		return h.VirtualMachine.RelocateVMTask(ctx, req)
	})
}

func (s *Sim) moveOffNAS(ctx *simulator.Context, vm *simulator.VirtualMachine, disks []nasDisk, target types.ManagedObjectReference) error {
	ds, ok := ctx.Map.Get(target).(*simulator.Datastore)
	if !ok {
		return fmt.Errorf("datastore %s not found", target.Value)
	}
	tdir := ds.Info.GetDatastoreInfo().Url
	if err := os.MkdirAll(filepath.Join(tdir, vm.Name), 0o755); err != nil {
		return err
	}
	type moved struct {
		d             nasDisk
		newName, flat string
	}
	var done []moved
	for _, d := range disks {
		t, unmount, err := s.nfsMount(d.m.remoteHost, d.m.remotePath)
		if err != nil {
			return err
		}
		err = func() error {
			defer unmount()
			flat, size, err := flatOf(t, d.file)
			if err != nil {
				return err
			}
			base := strings.TrimSuffix(filepath.Base(d.file), ".vmdk")
			dst := filepath.Join(tdir, vm.Name, base+"-flat.vmdk")
			if err := copyNFS(t, flat, size, dst); err != nil {
				return err
			}
			desc, err := readNFS(t, d.file, 0, mustSize(t, d.file))
			if err != nil {
				return err
			}
			desc = extentRE.ReplaceAll(desc, []byte(fmt.Sprintf(`RW ${1} VMFS "%s-flat.vmdk"`, base)))
			if err := os.WriteFile(filepath.Join(tdir, vm.Name, base+".vmdk"), desc, 0o644); err != nil {
				return err
			}
			done = append(done, moved{d: d, newName: fmt.Sprintf("[%s] %s/%s.vmdk", ds.Name, vm.Name, base), flat: flat})
			return nil
		}()
		if err != nil {
			return err
		}
	}
	// the disks now live on the target; the source files are deleted
	for _, m := range done {
		b := m.d.disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		b.FileName, b.Datastore = m.newName, &target
		if t, unmount, err := s.nfsMount(m.d.m.remoteHost, m.d.m.remotePath); err == nil {
			_ = t.Remove(m.flat)
			_ = t.Remove(m.d.file)
			unmount()
		}
	}
	// the VM uses the target now, not the NFS datastores it left
	keep := []types.ManagedObjectReference{target}
	for _, ref := range vm.Datastore {
		left := false
		for _, m := range done {
			left = left || ref == m.d.m.ref
		}
		if !left && ref != target {
			keep = append(keep, ref)
		}
	}
	vm.Datastore = keep
	// the VM's own files (.vmx, .nvram) move too
	if vm.Config.Files.VmPathName != "" {
		if m := dsPathRE.FindStringSubmatch(vm.Config.Files.VmPathName); m != nil {
			n := s.nasState()
			n.mu.Lock()
			src := n.mounts[m[1]]
			n.mu.Unlock()
			if src != nil {
				from := filepath.Dir(filepath.Join(src.dir, m[2]))
				entries, _ := os.ReadDir(from)
				for _, e := range entries {
					if b, err := os.ReadFile(filepath.Join(from, e.Name())); err == nil && !e.IsDir() && !strings.HasSuffix(e.Name(), "-flat.vmdk") {
						_ = os.WriteFile(filepath.Join(tdir, vm.Name, e.Name()), b, 0o644)
					}
				}
				vm.Config.Files.VmPathName = fmt.Sprintf("[%s] %s/%s", ds.Name, vm.Name, filepath.Base(m[2]))
				vm.Summary.Config.VmPathName = vm.Config.Files.VmPathName
				dir := fmt.Sprintf("[%s] %s/", ds.Name, vm.Name)
				vm.Config.Files.SnapshotDirectory, vm.Config.Files.LogDirectory, vm.Config.Files.SuspendDirectory = dir, dir, dir
				// vcsim derives vm.datastore from the layout's files again
				var files []types.VirtualMachineFileLayoutExFileInfo
				for _, f := range vm.LayoutEx.File {
					if !strings.HasPrefix(f.Name, "["+src.name+"]") {
						files = append(files, f)
					}
				}
				vm.LayoutEx.File = files
			}
		}
	}
	return nil
}

func mustSize(t *nfsc.Target, p string) int64 {
	fi, _, err := t.Lookup(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// copyNFS copies size bytes of a file on the export into a local sparse
// file (all-zero MiBs stay holes).
func copyNFS(t *nfsc.Target, path string, size int64, dst string) error {
	f, err := t.Open(path)
	if err != nil {
		return fmt.Errorf("open %s over NFS: %v", path, err)
	}
	defer f.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	if err := out.Truncate(size); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	zero := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		n := min(int64(len(buf)), size-off)
		got, err := f.ReadAt(buf[:n], off)
		if int64(got) < n {
			return fmt.Errorf("read %s over NFS at %d: %v", path, off, err)
		}
		if bytes.Equal(buf[:n], zero[:n]) {
			continue
		}
		if _, err := out.WriteAt(buf[:n], off); err != nil {
			return err
		}
	}
	return out.Sync()
}

// RemoveDatastore unmounts an NFS datastore (see top).
func (r *router) RemoveDatastore(ctx *simulator.Context, req *types.RemoveDatastore) soap.HasFault {
	body := &methods.RemoveDatastoreBody{}
	ds, ok := ctx.Map.Get(req.Datastore).(*simulator.Datastore)
	if !ok {
		body.Fault_ = simulator.Fault("", &types.ManagedObjectNotFound{Obj: req.Datastore})
		return body
	}
	// VMs that still use it (vcsim's ds.Vm keeps VMs moved away)
	var users []types.ManagedObjectReference
	for _, ref := range ds.Vm {
		vm, ok := ctx.Map.Get(ref).(*simulator.VirtualMachine)
		if !ok {
			continue
		}
		for _, d := range vm.Datastore {
			if d == ds.Self {
				users = append(users, ref)
			}
		}
	}
	if len(users) > 0 {
		body.Fault_ = simulator.Fault(fmt.Sprintf("The resource '%s' is in use.", ds.Name), &types.ResourceInUse{Type: "Datastore", Name: ds.Name})
		return body
	}
	var res soap.HasFault
	ctx.WithLock(ds, func() {
		ds.Vm = nil
		res = ds.DestroyTask(ctx, &types.Destroy_Task{This: ds.Self})
	})
	task := ctx.Map.Get(res.(*methods.Destroy_TaskBody).Res.Returnval).(*simulator.Task)
	task.Wait()
	if task.Info.Error != nil {
		body.Fault_ = simulator.Fault(task.Info.Error.LocalizedMessage, task.Info.Error.Fault)
		return body
	}
	// vcsim's Destroy leaves the datastore in the host's datastore system
	drop := func(list []types.ManagedObjectReference) []types.ManagedObjectReference {
		var out []types.ManagedObjectReference
		for _, ref := range list {
			if ref != ds.Self {
				out = append(out, ref)
			}
		}
		return out
	}
	if dss, ok := ctx.Map.Get(req.This).(*simulator.HostDatastoreSystem); ok {
		ctx.WithLock(dss, func() {
			dss.Datastore = drop(dss.Datastore)
			if host, ok := ctx.Map.Get(dss.Host.Self).(*simulator.HostSystem); ok {
				ctx.WithLock(host, func() {
					host.Datastore = drop(host.Datastore)
					ctx.Map.Update(ctx, host, []types.PropertyChange{{Name: "datastore", Val: host.Datastore}})
				})
			}
			dss.Host.Datastore = drop(dss.Host.Datastore)
		})
	}
	n := r.sim.nasState()
	n.mu.Lock()
	if m := n.mounts[ds.Name]; m != nil {
		os.RemoveAll(filepath.Dir(m.dir))
		delete(n.mounts, ds.Name)
	}
	n.mu.Unlock()
	body.Res = &types.RemoveDatastoreResponse{}
	return body
}

// DialRPC connects go-nfs-client's RPC client to addr. The client binds a
// random local port of 49152-65535 and gives up when it is taken (by a
// connection in TIME_WAIT of an earlier mount): try again a few times.
func DialRPC(addr string) (*rpc.Client, error) {
	var err error
	for range 20 {
		var c *rpc.Client
		if c, err = rpc.DialTCP("tcp", addr, false); err == nil {
			return c, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, err
		}
	}
	return nil, err
}
