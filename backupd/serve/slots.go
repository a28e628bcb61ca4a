package serve

import (
	"context"
	"sync"
)

// slots caps the VM backups running at once: in total and per ESXi host.
type slots struct {
	total   chan struct{}
	perHost int
	mu      sync.Mutex
	hosts   map[string]chan struct{}
}

func newSlots(p Parallelism) *slots {
	if p.VMs < 1 {
		p.VMs = DefaultParallelVMs
	}
	if p.PerHost < 1 {
		p.PerHost = DefaultParallelHosts
	}
	return &slots{total: make(chan struct{}, p.VMs), perHost: p.PerHost, hosts: map[string]chan struct{}{}}
}

// acquire waits for a slot on host and a slot in total (in that order, so
// VMs of a busy host do not hold total slots while they wait) and returns
// the function that releases both.
func (s *slots) acquire(ctx context.Context, host string) (release func(), err error) {
	s.mu.Lock()
	h := s.hosts[host]
	if h == nil {
		h = make(chan struct{}, s.perHost)
		s.hosts[host] = h
	}
	s.mu.Unlock()
	select {
	case h <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case s.total <- struct{}{}:
	case <-ctx.Done():
		<-h
		return nil, ctx.Err()
	}
	return func() { <-s.total; <-h }, nil
}

// lockVM waits until no other run of the server backs up or verifies vm
// and returns its unlock function.
func (s *Server) lockVM(ctx context.Context, vm string) (func(), error) {
	s.mu.Lock()
	l := s.vmLocks[vm]
	if l == nil {
		l = make(chan struct{}, 1)
		s.vmLocks[vm] = l
	}
	s.mu.Unlock()
	select {
	case l <- struct{}{}:
		return func() { <-l }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// currentSlots is the limiter of the configuration in force.
func (s *Server) currentSlots() *slots {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.slots
}
