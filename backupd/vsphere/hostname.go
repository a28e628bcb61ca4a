package vsphere

import (
	"context"

	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// HostName is the name of the ESXi host whose MoRef value is ref (VM.Host,
// e.g. "host-15"): the name SelectedVM.Host carries, so that per-host
// limits count a VM found by FindVM and one a Selection picked together.
// It is ref itself when the name cannot be read.
func (c *Conn) HostName(ctx context.Context, ref string) string {
	if ref == "" {
		return ""
	}
	var h mo.HostSystem
	moref := types.ManagedObjectReference{Type: "HostSystem", Value: ref}
	if err := property.DefaultCollector(c.Client).RetrieveOne(ctx, moref, []string{"name"}, &h); err != nil || h.Name == "" {
		return ref
	}
	return h.Name
}
