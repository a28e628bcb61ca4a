package backupd

import (
	"context"
	"sync"

	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
)

// ParallelOptions limit how many VMs are backed up at once.
type ParallelOptions struct {
	// VMs is how many VMs run at once (default 1).
	VMs int
	// PerHost caps the VMs running at once on one ESXi host (default 2),
	// so that one host's snapshots and NBD service are not overloaded.
	PerHost int
}

// VMOutcome is the result of one VM of BackupVMs.
type VMOutcome struct {
	Spec   string
	Result *Result
	Err    error
}

// BackupVMs backs up several VMs, at most par.VMs at once and par.PerHost
// at once per ESXi host. One VM failing does not stop the others. The
// outcomes are in the order of specs.
func BackupVMs(ctx context.Context, repo *blockmap.Repo, conn *vsphere.Conn, specs []string, opts JobOptions, par ParallelOptions) []VMOutcome {
	if par.VMs <= 0 {
		par.VMs = 1
	}
	if par.PerHost <= 0 {
		par.PerHost = 2
	}
	out := make([]VMOutcome, len(specs))
	slots := NewSlots(par.VMs, par.PerHost)
	var wg sync.WaitGroup
	for i, spec := range specs {
		out[i].Spec = spec
		wg.Add(1)
		go func() {
			defer wg.Done()
			host := ""
			if vm, err := conn.FindVM(ctx, spec); err == nil {
				host = vm.Host
			}
			release, err := slots.Acquire(ctx, host)
			if err != nil {
				out[i].Err = err
				return
			}
			defer release()
			out[i].Result, out[i].Err = BackupVM(ctx, repo, conn, spec, opts)
		}()
	}
	wg.Wait()
	return out
}
