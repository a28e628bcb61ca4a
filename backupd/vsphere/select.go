package vsphere

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/types"
)

// Selection picks VMs of a vCenter: a VM is selected when it matches any
// name pattern, lies (at any depth) under any folder, or carries any tag;
// then Exclude (name globs) removes VMs. Templates are never selected.
//
//   - Names are path.Match globs over VM names ("web-*"); a pattern with a
//     slash is matched against the inventory path instead
//     ("/DC0/vm/prod/*", or an exact path); a MoRef ("vm-42" or
//     "VirtualMachine:vm-42") selects that VM. A pattern that matches
//     nothing is not an error.
//   - Folders are inventory paths ("/DC0/vm/prod") or paths relative to
//     each datacenter's VM folder ("prod", "prod/web"), or folder MoRefs;
//     every VM below the folder, at any depth, is selected. A folder that
//     does not exist is an error that lists the folders that do.
//   - Tags are "category:tag" or just "tag" (in any category), attached to
//     the VM itself. A tag or category that does not exist is an error
//     that lists the tags that do. Tags are read through the vSphere
//     Automation API, which needs Credentials.
//   - Exclude takes the same forms as Names.
type Selection struct {
	Names   []string
	Folders []string
	Tags    []string
	Exclude []string
	// Credentials log in the vSphere Automation API session that Tags
	// need (the REST API cannot reuse the SOAP session): give the ones the
	// Conn was made with. Not needed without Tags. Never printed (see
	// Credentials.String) and never read from or written to config files.
	Credentials Credentials `json:"-" yaml:"-"`
}

// SelectedVM is one VM a Selection picked.
type SelectedVM struct {
	Name string
	// MoRef is the managed object reference value, e.g. "vm-42": the most
	// precise argument for FindVM.
	MoRef string
	// Path is the inventory path, e.g. "/DC0/vm/prod/web-1".
	Path string
	// Host is the name of the ESXi host the VM is registered on ("" when
	// the server does not say).
	Host string
}

// Property-collector types and the properties SelectVMs reads of them.
var selectProps = map[string][]string{
	"Folder":         {"name", "parent"},
	"Datacenter":     {"name", "parent", "vmFolder"},
	"VirtualApp":     {"name", "parentFolder", "parentVApp"},
	"VirtualMachine": {"name", "parent", "parentVApp", "runtime.host", "config.template"},
	"HostSystem":     {"name"},
}

// SelectVMs returns the VMs sel selects, sorted by name (then path),
// each once. The whole inventory (folders, VMs, hosts) is read in one
// property-collector retrieval; tags cost a few vAPI calls per tag
// category involved.
func (c *Conn) SelectVMs(ctx context.Context, sel Selection) ([]SelectedVM, error) {
	names, err := compilePatterns("name pattern", sel.Names)
	if err != nil {
		return nil, err
	}
	exclude, err := compilePatterns("exclude pattern", sel.Exclude)
	if err != nil {
		return nil, err
	}
	inv, err := c.readInventory(ctx)
	if err != nil {
		return nil, err
	}
	folders, err := inv.resolveFolders(sel.Folders)
	if err != nil {
		return nil, err
	}
	tagged := map[string]bool{}
	if len(sel.Tags) > 0 {
		if tagged, err = c.taggedVMs(ctx, sel.Credentials, sel.Tags); err != nil {
			return nil, err
		}
	}
	var out []SelectedVM
	for _, vm := range inv.vms {
		if vm.template {
			continue
		}
		p := inv.path(vm.ref)
		if !names.match(vm, p) && !inv.under(vm.ref, folders) && !tagged[vm.ref.Value] {
			continue
		}
		if exclude.match(vm, p) {
			continue
		}
		out = append(out, SelectedVM{Name: vm.name, MoRef: vm.ref.Value, Path: p, Host: inv.hostName(vm.host)})
	}
	slices.SortFunc(out, func(a, b SelectedVM) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Path, b.Path), cmp.Compare(a.MoRef, b.MoRef))
	})
	c.log.Debug("selected VMs", "count", len(out), "names", len(sel.Names), "folders", len(sel.Folders), "tags", len(sel.Tags), "excluded", len(sel.Exclude))
	return out, nil
}

// patterns are validated name patterns (see Selection.Names).
type patterns []string

func compilePatterns(what string, in []string) (patterns, error) {
	var out patterns
	for _, p := range in {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, fmt.Errorf("empty %s", what)
		}
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("%s %q: %w", what, p, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// match reports whether any pattern selects vm, whose inventory path is p.
func (ps patterns) match(vm *invObject, p string) bool {
	for _, pat := range ps {
		if strings.Contains(pat, "/") {
			if ok, _ := path.Match(pat, p); ok || pat == p {
				return true
			}
			continue
		}
		if pat == vm.name || pat == vm.ref.Value || pat == vm.ref.String() {
			return true
		}
		if ok, _ := path.Match(pat, vm.name); ok {
			return true
		}
	}
	return false
}

// invObject is one inventory object with the properties SelectVMs reads.
type invObject struct {
	ref      types.ManagedObjectReference
	name     string
	parent   *types.ManagedObjectReference // folder, datacenter or vApp
	vmFolder *types.ManagedObjectReference // datacenters only
	host     *types.ManagedObjectReference // VMs only
	template bool
}

// inventory is the folder tree with its VMs and hosts.
type inventory struct {
	objects map[types.ManagedObjectReference]*invObject
	vms     []*invObject
	paths   map[types.ManagedObjectReference]string
}

// readInventory reads folders, datacenters, vApps, VMs and hosts in one
// retrieval through a container view of the root folder.
func (c *Conn) readInventory(ctx context.Context) (*inventory, error) {
	kinds := make([]string, 0, len(selectProps))
	for k := range selectProps {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	v, err := view.NewManager(c.Client).CreateContainerView(ctx, c.Client.ServiceContent.RootFolder, kinds, true)
	if err != nil {
		return nil, fmt.Errorf("read inventory: %w", err)
	}
	defer func() { _ = v.Destroy(context.WithoutCancel(ctx)) }()
	spec := types.PropertyFilterSpec{ObjectSet: []types.ObjectSpec{{
		Obj:       v.Reference(),
		Skip:      types.NewBool(true),
		SelectSet: []types.BaseSelectionSpec{&types.TraversalSpec{Type: "ContainerView", Path: "view"}},
	}}}
	for _, k := range kinds {
		spec.PropSet = append(spec.PropSet, types.PropertySpec{Type: k, PathSet: selectProps[k]})
	}
	res, err := property.DefaultCollector(c.Client).RetrieveProperties(ctx, types.RetrieveProperties{SpecSet: []types.PropertyFilterSpec{spec}})
	if err != nil {
		return nil, fmt.Errorf("read inventory: %w", err)
	}
	inv := &inventory{objects: map[types.ManagedObjectReference]*invObject{}, paths: map[types.ManagedObjectReference]string{}}
	for _, oc := range res.Returnval {
		o := &invObject{ref: oc.Obj}
		for _, p := range oc.PropSet {
			switch val := p.Val.(type) {
			case string:
				if p.Name == "name" {
					o.name = val
				}
			case bool:
				if p.Name == "config.template" {
					o.template = val
				}
			case types.ManagedObjectReference:
				r := val
				switch p.Name {
				case "parent", "parentFolder":
					o.parent = &r
				case "parentVApp":
					if o.parent == nil || oc.Obj.Type == "VirtualMachine" {
						o.parent = &r // a VM in a vApp has no folder parent
					}
				case "vmFolder":
					o.vmFolder = &r
				case "runtime.host":
					o.host = &r
				}
			}
		}
		inv.objects[oc.Obj] = o
		if oc.Obj.Type == "VirtualMachine" {
			inv.vms = append(inv.vms, o)
		}
	}
	// The root folder is not in its own view: it is the path's "/".
	inv.paths[c.Client.ServiceContent.RootFolder] = ""
	return inv, nil
}

// path is the inventory path of ref, "/DC0/vm/prod/web-1".
func (inv *inventory) path(ref types.ManagedObjectReference) string {
	if p, ok := inv.paths[ref]; ok {
		return p
	}
	o, ok := inv.objects[ref]
	if !ok {
		return ""
	}
	inv.paths[ref] = "/" + o.name // breaks a (malformed) parent cycle
	p := "/" + o.name
	if o.parent != nil {
		p = inv.path(*o.parent) + p
	}
	inv.paths[ref] = p
	return p
}

// under reports whether ref lies below any of the containers.
func (inv *inventory) under(ref types.ManagedObjectReference, containers map[types.ManagedObjectReference]bool) bool {
	if len(containers) == 0 {
		return false
	}
	for seen := 0; seen <= len(inv.objects); seen++ {
		o, ok := inv.objects[ref]
		if !ok || o.parent == nil {
			return false
		}
		ref = *o.parent
		if containers[ref] {
			return true
		}
	}
	return false
}

func (inv *inventory) hostName(ref *types.ManagedObjectReference) string {
	if ref == nil {
		return ""
	}
	if o, ok := inv.objects[*ref]; ok {
		return o.name
	}
	return ""
}

// resolveFolders turns Selection.Folders into the containers they name.
func (inv *inventory) resolveFolders(specs []string) (map[types.ManagedObjectReference]bool, error) {
	out := map[types.ManagedObjectReference]bool{}
	if len(specs) == 0 {
		return out, nil
	}
	byPath := map[string][]types.ManagedObjectReference{}
	var vmFolders []types.ManagedObjectReference
	for ref, o := range inv.objects {
		switch ref.Type {
		case "Folder", "Datacenter", "VirtualApp":
			byPath[inv.path(ref)] = append(byPath[inv.path(ref)], ref)
		}
		if o.vmFolder != nil {
			vmFolders = append(vmFolders, *o.vmFolder)
		}
	}
	for _, spec := range specs {
		s := strings.TrimSpace(spec)
		if s == "" {
			return nil, errors.New("empty folder in the selection")
		}
		var found []types.ManagedObjectReference
		switch ref, isRef := inv.folderRef(s); {
		case isRef:
			found = append(found, ref)
		case strings.HasPrefix(s, "/"):
			found = byPath[strings.TrimRight(s, "/")]
		default:
			rel := strings.Trim(s, "/")
			for _, vf := range vmFolders {
				found = append(found, byPath[inv.path(vf)+"/"+rel]...)
			}
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("folder %q not found; VM folders: %s", spec, listSome(inv.vmFolderPaths(vmFolders)))
		}
		for _, r := range found {
			out[r] = true
		}
	}
	return out, nil
}

// folderRef returns the folder (or datacenter, or vApp) whose MoRef is s:
// "group-v3", "Folder:group-v3" or "Datacenter:datacenter-2".
func (inv *inventory) folderRef(s string) (types.ManagedObjectReference, bool) {
	var ref types.ManagedObjectReference
	if !ref.FromString(s) {
		ref = types.ManagedObjectReference{Type: "Folder", Value: s}
	}
	o, ok := inv.objects[ref]
	if !ok || (ref.Type != "Folder" && ref.Type != "Datacenter" && ref.Type != "VirtualApp") {
		return ref, false
	}
	return o.ref, true
}

// vmFolderPaths lists the inventory paths of the VM folders (and vApps)
// below the datacenters' VM folders, sorted.
func (inv *inventory) vmFolderPaths(vmFolders []types.ManagedObjectReference) []string {
	roots := map[types.ManagedObjectReference]bool{}
	for _, r := range vmFolders {
		roots[r] = true
	}
	var out []string
	for ref := range inv.objects {
		if (ref.Type == "Folder" || ref.Type == "VirtualApp") && (roots[ref] || inv.under(ref, roots)) {
			out = append(out, inv.path(ref))
		}
	}
	slices.Sort(out)
	return out
}

// listSome joins at most 50 names for an error message.
func listSome(names []string) string {
	const most = 50
	if len(names) == 0 {
		return "(none)"
	}
	if len(names) > most {
		return strings.Join(names[:most], ", ") + fmt.Sprintf(" and %d more", len(names)-most)
	}
	return strings.Join(names, ", ")
}
