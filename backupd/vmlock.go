package backupd

import (
	"context"

	"github.com/cairnbackup/cairn/blockmap"
)

// LockRestoreTarget takes the repository's lock of the VM that req
// overwrites (a rollback in place, or a restore that replaces a VM of the
// same name), so that no backup of that VM snapshots it half-written and
// no second restore writes it at once. A restore to a new VM, or to a
// name the repository cannot hold, needs no lock: the result is nil, whose
// Release does nothing.
func LockRestoreTarget(ctx context.Context, repo *blockmap.Repo, req RestoreRequest) (*blockmap.VMLock, error) {
	if !req.InPlace && !req.Replace {
		return nil, nil
	}
	name := req.Create.Name
	if name == "" {
		name = req.Point.VM
	}
	if blockmap.ValidateName("VM", name) != nil {
		return nil, nil
	}
	return repo.LockVM(ctx, name, "cairn restore of point "+req.Point.ID)
}
