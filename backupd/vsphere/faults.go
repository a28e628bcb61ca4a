package vsphere

import (
	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/vim25/types"
)

// IsNoDiskSpace reports whether err is vSphere's NoDiskSpace fault (a
// datastore without room for the disks being created), from a task or a
// call, anywhere in err's chain. Every write transport creates the same
// disks, so such a failure is no reason to try the next one.
func IsNoDiskSpace(err error) bool {
	return err != nil && fault.Is(err, &types.NoDiskSpace{})
}
