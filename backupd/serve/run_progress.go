package serve

import (
	"sync"
	"time"

	"github.com/cairnbackup/cairn/backupd"
)

// RunProgress is how far a running backup attempt has read: the disk
// being read last and the bytes read of the bytes to read (summed over
// the disks started so far; the plan of a disk is known only when it
// starts).
type RunProgress struct {
	Disk  string `json:"disk"`
	Done  int64  `json:"done"`
	Total int64  `json:"total"`
}

// progressEvery bounds how often a copy's progress takes the server's
// lock.
const progressEvery = 500 * time.Millisecond

// withProgress returns opts whose Progress keeps r.Progress current
// (and still calls the Progress opts had). Each attempt starts afresh.
func (s *Server) withProgress(opts backupd.JobOptions, r *RunRecord) backupd.JobOptions {
	prev := opts.Progress
	opts.Progress = func(vm, disk string, total int64) (func(int64), func()) {
		var padd func(int64)
		var pfinish func()
		if prev != nil {
			padd, pfinish = prev(vm, disk, total)
		}
		s.update(r, func(r *RunRecord) {
			if r.Progress == nil {
				r.Progress = &RunProgress{}
			}
			r.Progress.Disk, r.Progress.Total = disk, r.Progress.Total+total
		})
		var mu sync.Mutex
		var pending int64
		var last time.Time
		flush := func(force bool) {
			mu.Lock()
			if !force && time.Since(last) < progressEvery {
				mu.Unlock()
				return
			}
			n := pending
			pending, last = 0, time.Now()
			mu.Unlock()
			if n != 0 {
				s.update(r, func(r *RunRecord) {
					if r.Progress != nil {
						r.Progress.Done += n
					}
				})
			}
		}
		add := func(n int64) {
			if padd != nil {
				padd(n)
			}
			mu.Lock()
			pending += n
			mu.Unlock()
			flush(false)
		}
		finish := func() {
			flush(true)
			if pfinish != nil {
				pfinish()
			}
		}
		return add, finish
	}
	return opts
}
