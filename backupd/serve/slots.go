package serve

import "github.com/cairnbackup/cairn/backupd"

// newSlots is the limiter of a configuration's parallelism.
func newSlots(p Parallelism) *backupd.Slots {
	if p.VMs < 1 {
		p.VMs = DefaultParallelVMs
	}
	if p.PerHost < 1 {
		p.PerHost = DefaultParallelHosts
	}
	return backupd.NewSlots(p.VMs, p.PerHost)
}

// currentSlots is the limiter of the configuration in force.
func (s *Server) currentSlots() *backupd.Slots {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.slots
}
