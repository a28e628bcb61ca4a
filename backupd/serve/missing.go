package serve

import (
	"fmt"
	"log/slog"
	"path"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/backupd/vsphere"
)

// ErrVMMissing: a VM a job names exactly (not by a glob) is not in its
// vCenter: renamed, removed, or a typo. It is also vsphere.ErrVMNotFound.
var ErrVMMissing = &missingVM{}

// missingVM is the error of a run of a VM the job names that the vCenter
// does not have.
type missingVM struct{ job, vm, vcenter string }

func (e *missingVM) Error() string {
	return fmt.Sprintf("job %s names VM %q, which vcenter %s does not have (not found, or a template): renamed or removed? Its points stay in the repository; correct or remove it in the job's vms:",
		e.job, e.vm, e.vcenter)
}

func (e *missingVM) Is(target error) bool {
	return target == ErrVMMissing || target == vsphere.ErrVMNotFound
}

// missingVMs returns the exact names, inventory paths and MoRefs of the
// job's vms: that select none of vms (and that exclude: does not remove):
// a glob that matches nothing is fine, a VM named exactly that is gone is
// a VM no longer backed up, which the run records as failed.
func missingVMs(job Job, vms []vsphere.SelectedVM) []string {
	var out []string
	for _, want := range job.VMs {
		if strings.ContainsAny(want, `*?[\`) {
			continue
		}
		excluded := false
		for _, p := range job.Exclude {
			if ok, _ := path.Match(p, path.Base(want)); ok {
				excluded = true
			}
		}
		found := false
		for _, vm := range vms {
			found = found || vm.Name == want || vm.MoRef == want || vm.Path == want
		}
		if !found && !excluded {
			out = append(out, want)
		}
	}
	return out
}

// missingVMError is the error of a run of a VM the job names that the
// vCenter does not have.
func missingVMError(job Job, vm string) error {
	return &missingVM{job: job.Name, vm: vm, vcenter: job.VCenter}
}

// recordMissingVMs records a failed run for each VM the job names exactly
// that its selection did not find, logs it and counts it as a failure;
// it returns their number.
func (s *Server) recordMissingVMs(job Job, vms []vsphere.SelectedVM, trigger string, log *slog.Logger) int {
	missing := missingVMs(job, vms)
	for _, vm := range missing {
		err := missingVMError(job, vm)
		r := s.newRun(job.Name, vm, trigger)
		s.finish(r, time.Now(), err)
		s.metrics.jobFailed(job.Name)
		log.Error("backup failed: the VM is not in the vCenter", "vm", vm, "run", r.ID, "error", err)
	}
	return len(missing)
}
