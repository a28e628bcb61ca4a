package vsphere

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/cairnbackup/cairn/backupd/vmconfig"
)

// VMPlacement reads where a VM lives: its datacenter, the inventory paths
// of its folder and resource pool, its cluster (if any), host and the
// datastore of its files. A point records it beside the configuration so
// that a restore can put the VM back (see CreateSpec).
func (c *Conn) VMPlacement(ctx context.Context, vm *VM) (*vmconfig.Placement, error) {
	pc := property.DefaultCollector(c.Client)
	var m mo.VirtualMachine
	if err := pc.RetrieveOne(ctx, vm.Ref, []string{"parent", "resourcePool", "runtime.host", "config.files.vmPathName"}, &m); err != nil {
		return nil, fmt.Errorf("placement of VM %s: %w", vm.Name, err)
	}
	p := &vmconfig.Placement{}
	if m.Config != nil {
		var dp object.DatastorePath
		if dp.FromString(m.Config.Files.VmPathName) {
			p.Datastore = dp.Datastore
		}
	}
	anc, err := mo.Ancestors(ctx, c.Client, c.Client.ServiceContent.PropertyCollector, vm.Ref)
	if err != nil {
		return nil, fmt.Errorf("placement of VM %s: ancestors: %w", vm.Name, err)
	}
	for _, e := range anc {
		if e.Self.Type == "Datacenter" {
			p.Datacenter = e.Name
		}
	}
	if m.Parent != nil {
		if p.Folder, err = find.InventoryPath(ctx, c.Client, *m.Parent); err != nil {
			return nil, fmt.Errorf("placement of VM %s: folder: %w", vm.Name, err)
		}
	}
	if m.ResourcePool != nil {
		if p.ResourcePool, err = find.InventoryPath(ctx, c.Client, *m.ResourcePool); err != nil {
			return nil, fmt.Errorf("placement of VM %s: resource pool: %w", vm.Name, err)
		}
	}
	if m.Runtime.Host != nil {
		var h mo.HostSystem
		if err := pc.RetrieveOne(ctx, *m.Runtime.Host, []string{"name", "parent"}, &h); err != nil {
			return nil, fmt.Errorf("placement of VM %s: host: %w", vm.Name, err)
		}
		p.Host = h.Name
		if h.Parent != nil && h.Parent.Type == "ClusterComputeResource" {
			var cl mo.ClusterComputeResource
			if err := pc.RetrieveOne(ctx, *h.Parent, []string{"name"}, &cl); err != nil {
				return nil, fmt.Errorf("placement of VM %s: cluster: %w", vm.Name, err)
			}
			p.Cluster = cl.Name
		}
	}
	return p, nil
}

// Placed says where CreateVM or ImportVM put a VM: inventory paths of its
// folder and resource pool, its host, the datastore of its files and of
// each disk, whether the point's recorded placement was the default
// (Original), and one line for each recorded item that no longer exists
// and what was used instead (Fallbacks).
type Placed struct {
	Folder       string `json:"folder"`
	ResourcePool string `json:"resource_pool"`
	Host         string `json:"host"`
	Datastore    string `json:"datastore"`
	// Disks maps each disk's name in the point to its datastore.
	Disks     map[string]string `json:"disk_datastores"`
	Original  bool              `json:"original"`
	Fallbacks []string          `json:"fallbacks,omitempty"`
}

// fallback records that a recorded item was not usable.
func (p *placement) fallback(format string, args ...any) {
	p.placed.Fallbacks = append(p.placed.Fallbacks, fmt.Sprintf(format, args...))
}

// recordedFolder puts p.folder at the recorded folder when it exists.
func (c *Conn) recordedFolder(ctx context.Context, finder *find.Finder, p *placement, rec *vmconfig.Placement) {
	if rec == nil || rec.Folder == "" {
		return
	}
	f, err := finder.Folder(ctx, rec.Folder)
	if err != nil {
		p.fallback("recorded folder %s not found in %s: the VM goes to %s", rec.Folder, p.dc.Name(), p.folder.InventoryPath)
		return
	}
	p.folder = f
}

// hostIn returns the host of that name when it belongs to the compute
// resource owner, else nil.
func (c *Conn) hostIn(ctx context.Context, finder *find.Finder, name string, owner types.ManagedObjectReference) *object.HostSystem {
	if name == "" {
		return nil
	}
	h, err := finder.HostSystem(ctx, name)
	if err != nil {
		return nil
	}
	var hm mo.HostSystem
	if err := property.DefaultCollector(c.Client).RetrieveOne(ctx, h.Reference(), []string{"parent"}, &hm); err != nil || hm.Parent == nil || *hm.Parent != owner {
		return nil
	}
	return h
}

// recordedPool returns the recorded resource pool and its owner (cluster
// or standalone host's compute resource) when it exists.
func (c *Conn) recordedPool(ctx context.Context, finder *find.Finder, rec *vmconfig.Placement) (*object.ResourcePool, types.ManagedObjectReference, bool) {
	if rec == nil || rec.ResourcePool == "" {
		return nil, types.ManagedObjectReference{}, false
	}
	pool, err := finder.ResourcePool(ctx, rec.ResourcePool)
	if err != nil {
		return nil, types.ManagedObjectReference{}, false
	}
	var pm mo.ResourcePool
	if err := property.DefaultCollector(c.Client).RetrieveOne(ctx, pool.Reference(), []string{"owner"}, &pm); err != nil {
		return nil, types.ManagedObjectReference{}, false
	}
	return pool, pm.Owner, true
}

// recordedCompute places p at the recorded resource pool (and the recorded
// host when it still belongs to the pool's cluster or host), else at the
// recorded cluster, else at the recorded host; it reports false when
// nothing recorded exists (the caller then uses the default).
func (c *Conn) recordedCompute(ctx context.Context, finder *find.Finder, p *placement, rec *vmconfig.Placement) (bool, error) {
	if rec == nil {
		return false, nil
	}
	if pool, owner, ok := c.recordedPool(ctx, finder, rec); ok {
		p.pool = pool
		if p.host = c.hostIn(ctx, finder, rec.Host, owner); p.host != nil {
			return true, nil
		}
		hosts, err := object.NewComputeResource(c.Client, owner).Hosts(ctx)
		if err != nil || len(hosts) == 0 {
			return false, fmt.Errorf("hosts of resource pool %s: %v", rec.ResourcePool, err)
		}
		p.host = hosts[0]
		if rec.Host != "" {
			p.fallback("recorded host %s is gone from the cluster or host of resource pool %s: the VM goes to host %s", rec.Host, rec.ResourcePool, p.host.Name())
		}
		return true, nil
	}
	if rec.ResourcePool != "" {
		defer func() {
			where := "the default host's root pool"
			if p.host != nil {
				where = "the root pool of host " + p.host.Name()
			}
			if p.cluster != "" {
				where = "the root pool of cluster " + p.cluster
			}
			p.fallback("recorded resource pool %s not found in %s: the VM goes to %s", rec.ResourcePool, p.dc.Name(), where)
		}()
	}
	if rec.Cluster != "" {
		cl, err := finder.ClusterComputeResource(ctx, rec.Cluster)
		if err == nil {
			if p.pool, err = cl.ResourcePool(ctx); err != nil {
				return false, fmt.Errorf("resource pool of cluster %q: %w", rec.Cluster, err)
			}
			p.cluster = rec.Cluster
			if p.host = c.hostIn(ctx, finder, rec.Host, cl.Reference()); p.host != nil {
				return true, nil
			}
			hosts, err := cl.Hosts(ctx)
			if err != nil || len(hosts) == 0 {
				return false, &PlacementError{Field: "cluster", Value: rec.Cluster, Reason: "(recorded) has no hosts", Err: err}
			}
			p.host = hosts[0]
			if rec.Host != "" {
				p.fallback("recorded host %s is not in cluster %s: the VM goes to host %s", rec.Host, rec.Cluster, p.host.Name())
			}
			return true, nil
		}
		p.fallback("recorded cluster %s not found in %s", rec.Cluster, p.dc.Name())
	}
	if rec.Host != "" {
		h, err := finder.HostSystem(ctx, rec.Host)
		if err == nil {
			p.host = h
			if p.pool, err = h.ResourcePool(ctx); err != nil {
				return false, fmt.Errorf("resource pool of host %s: %w", h.Name(), err)
			}
			return true, nil
		}
	}
	return false, nil
}

// keepRecordedPool keeps the recorded resource pool when a --host or
// --cluster given puts the VM on the compute resource that owns it.
func (c *Conn) keepRecordedPool(ctx context.Context, finder *find.Finder, p *placement, rec *vmconfig.Placement) {
	pool, owner, ok := c.recordedPool(ctx, finder, rec)
	if !ok {
		return
	}
	var hm mo.HostSystem
	if err := property.DefaultCollector(c.Client).RetrieveOne(ctx, p.host.Reference(), []string{"parent"}, &hm); err != nil || hm.Parent == nil || *hm.Parent != owner {
		return
	}
	p.pool = pool
}

// hostDatastore is a datastore mounted on the chosen host.
type hostDatastore struct {
	name string
	ref  types.ManagedObjectReference
}

// datastores places the VM's files and each disk: all on the datastore
// asked for; else each on its recorded datastore when it is mounted on the
// host (a missing one falls back to the host's first datastore, said in a
// Fallback line); else all on the host's first datastore.
func (c *Conn) datastores(ctx context.Context, finder *find.Finder, p *placement, spec CreateSpec) error {
	var hm mo.HostSystem
	pc := property.DefaultCollector(c.Client)
	if err := pc.RetrieveOne(ctx, p.host.Reference(), []string{"datastore"}, &hm); err != nil {
		return fmt.Errorf("datastores of host %s: %w", p.host.Name(), err)
	}
	var mounted []hostDatastore
	for _, ref := range hm.Datastore {
		var dm mo.Datastore
		if err := pc.RetrieveOne(ctx, ref, []string{"name"}, &dm); err != nil {
			return fmt.Errorf("datastore %s: %w", ref.Value, err)
		}
		mounted = append(mounted, hostDatastore{dm.Name, ref})
	}
	pick := func(name string) *object.Datastore {
		for _, m := range mounted {
			if name == "" || m.name == name {
				ds := object.NewDatastore(c.Client, m.ref)
				ds.InventoryPath = m.name
				return ds
			}
		}
		return nil
	}
	p.diskDS = map[string]*object.Datastore{}
	if spec.Datastore != "" {
		if p.ds = pick(spec.Datastore); p.ds == nil {
			return &PlacementError{Field: "datastore", Value: spec.Datastore, Reason: "is not mounted on host " + p.host.Name()}
		}
		return nil
	}
	if p.ds = pick(""); p.ds == nil {
		return &PlacementError{Field: "datastore", Value: "", Reason: "(none) is mounted on host " + p.host.Name()}
	}
	def := p.ds
	rec := spec.Config.Placement
	if rec == nil {
		return nil
	}
	missing := func(name string) string {
		if _, err := finder.Datastore(ctx, name); err == nil {
			return "is not mounted on host " + p.host.Name()
		}
		return "not found in " + p.dc.Name()
	}
	want := rec.Datastore
	if want == "" && len(spec.Config.Disks) > 0 {
		want = spec.Config.Disks[0].Datastore
	}
	if want != "" {
		if ds := pick(want); ds != nil {
			p.ds = ds
		} else {
			p.fallback("recorded datastore %s of the VM's files %s: they go to %s", want, missing(want), def.InventoryPath)
		}
	}
	for _, d := range spec.Config.Disks {
		if d.Datastore == "" {
			continue
		}
		if ds := pick(d.Datastore); ds != nil {
			p.diskDS[d.Name] = ds
			continue
		}
		p.diskDS[d.Name] = def
		p.fallback("disk %s: recorded datastore %s %s: it goes to %s", d.Name, d.Datastore, missing(d.Datastore), def.InventoryPath)
	}
	return nil
}

// diskDatastore is the datastore a disk goes to.
func (p *placement) diskDatastore(disk string) *object.Datastore {
	if ds, ok := p.diskDS[disk]; ok {
		return ds
	}
	return p.ds
}

// finish fills p.placed from the choices made.
func (c *Conn) finishPlaced(ctx context.Context, p *placement, cfg *vmconfig.Config) {
	p.placed.Folder = p.folder.InventoryPath
	if p.placed.Folder == "" {
		p.placed.Folder, _ = find.InventoryPath(ctx, c.Client, p.folder.Reference())
	}
	p.placed.ResourcePool = p.pool.InventoryPath
	if p.placed.ResourcePool == "" {
		p.placed.ResourcePool, _ = find.InventoryPath(ctx, c.Client, p.pool.Reference())
	}
	p.placed.Host = p.host.Name()
	if p.placed.Host == "" || strings.Contains(p.placed.Host, "/") {
		var hm mo.HostSystem
		if err := property.DefaultCollector(c.Client).RetrieveOne(ctx, p.host.Reference(), []string{"name"}, &hm); err == nil {
			p.placed.Host = hm.Name
		}
	}
	p.placed.Host = path.Base(p.placed.Host)
	p.placed.Datastore = p.ds.InventoryPath
	p.placed.Disks = map[string]string{}
	for _, d := range cfg.Disks {
		p.placed.Disks[d.Name] = p.diskDatastore(d.Name).InventoryPath
	}
	p.placed.Original = cfg.Placement != nil
}

// makeDiskDirs creates the VM's directory on each datastore other than
// that of its files that a disk goes to: ESXi creates a disk file only in
// an existing directory.
func (c *Conn) makeDiskDirs(ctx context.Context, p *placement, name string) error {
	done := map[string]bool{p.ds.InventoryPath: true}
	fm := object.NewFileManager(c.Client)
	for _, ds := range p.diskDS {
		if done[ds.InventoryPath] {
			continue
		}
		done[ds.InventoryPath] = true
		dir := fmt.Sprintf("[%s] %s", ds.InventoryPath, name)
		if err := fm.MakeDirectory(ctx, dir, p.dc, true); err != nil && !isFileAlreadyExists(err) {
			return fmt.Errorf("make directory %s: %w", dir, err)
		}
	}
	return nil
}

func isFileAlreadyExists(err error) bool {
	return fault.Is(err, &types.FileAlreadyExists{})
}

// findNetwork finds a network by name, or a distributed port group by the
// "dvportgroup:KEY" form VMConfig records for NICs on one (the port
// group's key, which its name may not be).
func (c *Conn) findNetwork(ctx context.Context, finder *find.Finder, name string) (object.NetworkReference, error) {
	key, ok := strings.CutPrefix(name, "dvportgroup:")
	if !ok {
		return finder.Network(ctx, name)
	}
	nets, err := finder.NetworkList(ctx, "*")
	if err != nil {
		return nil, err
	}
	pc := property.DefaultCollector(c.Client)
	for _, n := range nets {
		pg, isPG := n.(*object.DistributedVirtualPortgroup)
		if !isPG {
			continue
		}
		var m mo.DistributedVirtualPortgroup
		if err := pc.RetrieveOne(ctx, pg.Reference(), []string{"key"}, &m); err == nil && m.Key == key {
			return pg, nil
		}
	}
	return nil, fmt.Errorf("distributed port group of key %q not found", key)
}

// givenPool places p in the resource pool spec names: on spec.Host, which
// must belong to the pool's cluster or host, else on the recorded host
// when it does, else on the first host of the pool's cluster or host.
func (c *Conn) givenPool(ctx context.Context, finder *find.Finder, p *placement, spec CreateSpec, rec *vmconfig.Placement) error {
	pool, err := finder.ResourcePool(ctx, spec.ResourcePool)
	if err != nil {
		return &PlacementError{Field: "resource_pool", Value: spec.ResourcePool, Reason: "not found in " + p.dc.Name(), Err: err}
	}
	var pm mo.ResourcePool
	if err := property.DefaultCollector(c.Client).RetrieveOne(ctx, pool.Reference(), []string{"owner"}, &pm); err != nil {
		return fmt.Errorf("resource pool %s: %w", spec.ResourcePool, err)
	}
	p.pool = pool
	if spec.Host != "" {
		if p.host = c.hostIn(ctx, finder, spec.Host, pm.Owner); p.host == nil {
			return &PlacementError{Field: "host", Value: spec.Host, Reason: "is no ESXi host of the cluster or host of resource pool " + spec.ResourcePool}
		}
		return nil
	}
	if p.host = c.hostIn(ctx, finder, recHost(rec), pm.Owner); p.host != nil {
		return nil
	}
	hosts, err := object.NewComputeResource(c.Client, pm.Owner).Hosts(ctx)
	if err != nil || len(hosts) == 0 {
		return &PlacementError{Field: "resource_pool", Value: spec.ResourcePool, Reason: "has no hosts", Err: err}
	}
	p.host = hosts[0]
	return nil
}
