package backupd

import (
	"context"
	"sync"
)

// Slots caps the VM jobs (backups, verifies against the source) running at
// once: in total and per ESXi host, so that one host's snapshots and NBD
// service are not overloaded. `cairn backup` of several VMs and `cairn
// serve` both take a slot around each VM's job.
//
// Waiters are served in arrival order among those that can run: a VM
// whose host is full waits without holding a total slot and lets VMs of
// other hosts pass, and once its host has room no later VM of that host
// overtakes it.
type Slots struct {
	total, perHost int

	mu      sync.Mutex
	running int
	hosts   map[string]int
	queue   []*slotWaiter
}

type slotWaiter struct {
	host    string
	ready   chan struct{} // closed when granted
	granted bool
}

// NewSlots caps jobs at total at once and perHost at once per host; a
// value below 1 counts as 1.
func NewSlots(total, perHost int) *Slots {
	return &Slots{total: max(total, 1), perHost: max(perHost, 1), hosts: map[string]int{}}
}

// Acquire waits for a slot on host (all VMs of an unknown host share "")
// and returns the function that gives it back (safe to call more than
// once). A slot free at the call is taken even when ctx is already done;
// a wait that ctx ends holds nothing and returns ctx's error.
func (s *Slots) Acquire(ctx context.Context, host string) (release func(), err error) {
	w := &slotWaiter{host: host, ready: make(chan struct{})}
	s.mu.Lock()
	s.queue = append(s.queue, w)
	s.dispatch()
	granted := w.granted
	s.mu.Unlock()
	if !granted {
		select {
		case <-w.ready:
		case <-ctx.Done():
			s.mu.Lock()
			if w.granted { // granted meanwhile: give it back
				s.put(w.host)
			} else {
				s.remove(w)
			}
			s.mu.Unlock()
			return nil, ctx.Err()
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.put(w.host)
			s.mu.Unlock()
		})
	}, nil
}

// dispatch grants, in queue order, every waiter that fits. s.mu is held.
func (s *Slots) dispatch() {
	kept := s.queue[:0]
	for _, w := range s.queue {
		if s.running < s.total && s.hosts[w.host] < s.perHost {
			s.running++
			s.hosts[w.host]++
			w.granted = true
			close(w.ready)
			continue
		}
		kept = append(kept, w)
	}
	clear(s.queue[len(kept):])
	s.queue = kept
}

// put gives back a slot of host and lets the next waiters in. s.mu is held.
func (s *Slots) put(host string) {
	s.running--
	if s.hosts[host]--; s.hosts[host] == 0 {
		delete(s.hosts, host)
	}
	s.dispatch()
}

// remove takes a waiter that gave up out of the queue. s.mu is held.
func (s *Slots) remove(w *slotWaiter) {
	for i, q := range s.queue {
		if q == w {
			s.queue = append(s.queue[:i], s.queue[i+1:]...)
			return
		}
	}
}

// InUse is how many slots are taken and how many callers wait.
func (s *Slots) InUse() (running, waiting int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running, len(s.queue)
}
