package test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// rssWatch follows the peak RSS (VmHWM) of a started child process.
//
// wait4's ru_maxrss cannot be used for a child of the test binary: Go
// starts children with a vfork-style clone that shares the parent's
// memory until exec, and Linux keeps the larger of that shared memory's
// high-water mark and the child's own. A test binary that grew to 800 MiB
// in earlier tests then reports 800 MiB for every child. VmHWM belongs to
// the child's own memory after exec, so polling it measures the child.
type rssWatch struct {
	peak atomic.Int64
	stop chan struct{}
	done chan struct{}
}

// watchRSS polls /proc/PID/status every 5 ms until stopped.
func watchRSS(pid int) *rssWatch {
	w := &rssWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			if n, err := vmHWM(pid); err == nil && n > w.peak.Load() {
				w.peak.Store(n)
			}
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// Peak stops the watch and returns the highest VmHWM seen, in bytes.
func (w *rssWatch) Peak() int64 {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	return w.peak.Load()
}

// vmHWM reads the peak RSS of a running process in bytes.
func vmHWM(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}
