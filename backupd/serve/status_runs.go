package serve

import (
	"slices"
	"strings"
	"time"
)

// addLastRuns sets each VM's last finished backup run of this server
// (LastRun) and adds the VMs the server ran that have no point yet, with
// 0 points: a VM whose every backup failed is shown, not left out.
func (s *Server) addLastRuns(vms []VMStatus) []VMStatus {
	last := map[string]RunRecord{}
	s.mu.Lock()
	for _, r := range s.runs {
		if r.VM == "*" || (r.State != StateOK && r.State != StateFailed && r.State != StateSkipped) {
			continue
		}
		if prev, ok := last[r.VM]; !ok || !r.End.Before(prev.End) {
			last[r.VM] = *r
		}
	}
	s.mu.Unlock()
	for i := range vms {
		if r, ok := last[vms[i].Name]; ok {
			vms[i].LastRun = &r
			delete(last, vms[i].Name)
		}
	}
	n := len(vms)
	for vm, r := range last {
		vms = append(vms, VMStatus{Name: vm, LastRun: &r})
	}
	slices.SortFunc(vms[n:], func(a, b VMStatus) int { return strings.Compare(a.Name, b.Name) })
	s.addJobs(s.Config(), vms)
	return vms
}

// addJobs sets each VM's Jobs: the jobs backing up from a vCenter that
// select it by name or did in their last selection (folders, tags), and
// Unselected when no job does and every job's selection is known: a VM
// removed from the vCenter or from every job keeps its points (serve
// never prunes a VM it does not back up), and the status says so.
func (s *Server) addJobs(cfg *Config, vms []VMStatus) {
	allKnown := true
	known := map[string]map[string]bool{}
	for _, j := range cfg.Jobs {
		if !j.BacksUp() || len(j.Folders)+len(j.Tags) == 0 {
			continue
		}
		names, ok := s.inv.known(j.Name)
		allKnown = allKnown && ok
		known[j.Name] = names
	}
	for i := range vms {
		vms[i].Jobs = []string{}
		for _, j := range cfg.Jobs {
			if !j.BacksUp() {
				continue
			}
			if j.SelectsByName(vms[i].Name) || known[j.Name][vms[i].Name] {
				vms[i].Jobs = append(vms[i].Jobs, j.Name)
			}
		}
		vms[i].Unselected = allKnown && len(vms[i].Jobs) == 0 && cfg.hasBackupJobs()
	}
}

// hasBackupJobs reports whether any job backs up from a vCenter.
func (c *Config) hasBackupJobs() bool {
	for _, j := range c.Jobs {
		if j.BacksUp() {
			return true
		}
	}
	return false
}

// reloadRejection is the last configuration reload that was refused,
// until a later one succeeds.
type reloadRejection struct {
	err string
	at  time.Time
}

// ReloadRejected records that a reload of the config was refused (err):
// /api/v1/status and cairn status show it until a reload succeeds, so a
// `systemctl reload` that did nothing is seen.
func (s *Server) ReloadRejected(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejected = reloadRejection{err: err.Error(), at: time.Now().UTC()}
}

// zoneName names the zone of cron schedules.
func zoneName(cfg *Config) string {
	if cfg.Location == nil || cfg.Location == time.Local {
		name, _ := time.Now().Zone()
		return name + " (the machine's zone)"
	}
	return cfg.Location.String()
}
