package serve

import (
	"context"
	"sync"
	"time"
)

// How long a job's selection is trusted by API requests: a VM in it is
// accepted for inventoryTTL; a VM not in it is refused without asking the
// vCenter again for inventoryMinRefresh (so a flood of requests for
// unknown VMs costs one vCenter login per job and period, not one each).
const (
	inventoryTTL        = time.Minute
	inventoryMinRefresh = 10 * time.Second
)

// inventory caches, per job, the names of the VMs its selection chose
// the last time it was asked (by a scheduled run or an API request).
type inventory struct {
	mu   sync.Mutex
	jobs map[string]*jobInventory
}

type jobInventory struct {
	fetch   sync.Mutex // one vCenter query per job at a time
	mu      sync.Mutex
	names   map[string]bool
	err     error
	fetched time.Time
}

func newInventory() *inventory { return &inventory{jobs: map[string]*jobInventory{}} }

func (inv *inventory) job(name string) *jobInventory {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	j := inv.jobs[name]
	if j == nil {
		j = &jobInventory{}
		inv.jobs[name] = j
	}
	return j
}

// put records what a job's selection chose just now.
func (inv *inventory) put(job string, names []string) {
	j := inv.job(job)
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	j.mu.Lock()
	j.names, j.err, j.fetched = set, nil, time.Now()
	j.mu.Unlock()
}

// reset forgets every job's selection (a reload may change them).
func (inv *inventory) reset() {
	inv.mu.Lock()
	inv.jobs = map[string]*jobInventory{}
	inv.mu.Unlock()
}

// selects reports whether job's selection holds vm, asking fetch (which
// lists the selection from the vCenter) only when the cached answer is
// too old: a VM is trusted for inventoryTTL, an absence (or a failed
// query) for inventoryMinRefresh. Concurrent callers share one fetch.
func (inv *inventory) selects(ctx context.Context, job, vm string, fetch func(context.Context) ([]string, error)) (bool, error) {
	j := inv.job(job)
	answer := func(now time.Time) (ok, fresh bool, err error) {
		j.mu.Lock()
		defer j.mu.Unlock()
		if j.fetched.IsZero() {
			return false, false, nil
		}
		age := now.Sub(j.fetched)
		if j.err != nil {
			return false, age < inventoryMinRefresh, j.err
		}
		if j.names[vm] {
			return true, age < inventoryTTL, nil
		}
		return false, age < inventoryMinRefresh, nil
	}
	if ok, fresh, err := answer(time.Now()); fresh {
		return ok, err
	}
	j.fetch.Lock()
	defer j.fetch.Unlock()
	// Another caller may have fetched while this one waited.
	if ok, fresh, err := answer(time.Now()); fresh {
		return ok, err
	}
	names, err := fetch(ctx)
	if err != nil {
		if ctx.Err() == nil { // a failure of the vCenter, not of this request
			j.mu.Lock()
			j.err, j.fetched = err, time.Now()
			j.mu.Unlock()
		}
		return false, err
	}
	inv.put(job, names)
	ok, _, _ := answer(time.Now())
	return ok, nil
}

// known returns the VMs of job's last successful selection, and false
// when there is none (the job has not selected since start or reload).
func (inv *inventory) known(job string) (map[string]bool, bool) {
	j := inv.job(job)
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.fetched.IsZero() || j.err != nil {
		return nil, false
	}
	return j.names, true
}
