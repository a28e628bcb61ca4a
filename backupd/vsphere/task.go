package vsphere

import (
	"context"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/types"
)

func removeSnapshotTask(ctx context.Context, c *Conn, req types.RemoveSnapshot_Task) (*object.Task, error) {
	res, err := methods.RemoveSnapshot_Task(ctx, c.Client, &req)
	if err != nil {
		return nil, err
	}
	return object.NewTask(c.Client, res.Returnval), nil
}
