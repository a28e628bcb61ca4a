package backupd

import (
	"context"

	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
)

// prestarted is a write target being opened ahead of its disk's turn: a
// quick rollback starts the NBD server of its first disk while it asks
// CBT what changed, instead of after.
type prestarted struct {
	disk string // target disk name
	wt   WriteTransport
	done chan struct{}
	t    DiskTarget
	err  error
}

// prestart opens, in the background, the first write transport for the
// target of the point's first disk when that transport is nbd (starting
// an NBD server changes nothing on the disk; hotadd would reconfigure the
// proxy VM, so it waits for its turn). The target is used by the first
// writeDisk of that disk; discardPrestart closes it when it was not.
func (j *restoreJob) prestart(ctx context.Context, p blockmap.Point, targets map[string]vsphere.Disk) {
	if j.transports == nil {
		j.transports = j.writeTransports(ctx)
	}
	if len(p.Disks) == 0 || len(j.transports) == 0 || j.transports[0].Name() != WriteTransportNBD {
		return
	}
	td, ok := targets[p.Disks[0].Name]
	if !ok || td.Capacity != p.Disks[0].Size {
		return // the plan fails before any write
	}
	pre := &prestarted{disk: td.Name, wt: j.transports[0], done: make(chan struct{})}
	ref := j.targetRef(td)
	go func() {
		defer close(pre.done)
		pre.t, pre.err = pre.wt.Open(ctx, ref)
	}()
	j.pre = pre
}

// openTarget opens target through wt, taking the prestarted one when it
// is for this disk and transport.
func (j *restoreJob) openTarget(ctx context.Context, wt WriteTransport, target vsphere.Disk) (DiskTarget, error) {
	if pre := j.pre; pre != nil && pre.wt == wt && pre.disk == target.Name {
		j.pre = nil
		<-pre.done
		return pre.t, pre.err
	} else if pre != nil {
		<-pre.done // its Open may still fill j.dirs
	}
	return wt.Open(ctx, j.targetRef(target))
}

// discardPrestart closes a prestarted target no disk took (CBT could not
// answer, nothing changed on that disk, the restore failed).
func (j *restoreJob) discardPrestart() {
	pre := j.pre
	if pre == nil {
		return
	}
	j.pre = nil
	<-pre.done
	if pre.t != nil {
		_ = pre.t.Close()
	}
}
