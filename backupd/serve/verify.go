package serve

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/notify"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
)

// VerifyStatus is what /api/v1/status says about the repository verify.
type VerifyStatus struct {
	Schedule string    `json:"schedule,omitempty"`
	NextRun  time.Time `json:"next_run,omitzero"`
	Running  bool      `json:"running"`
	Start    time.Time `json:"last_start,omitzero"`
	End      time.Time `json:"last_end,omitzero"`
	Blocks   int64     `json:"blocks_checked"`
	Bytes    int64     `json:"bytes_checked"`
	// Bad lists the blocks whose bytes did not match their hash.
	Bad   []blockmap.BadBlock `json:"bad,omitempty"`
	Error string              `json:"error,omitempty"`
}

// verifyRepository re-reads every stored block and checks its hash (as
// `cairn verify` does), records the result and logs each bad block.
func (s *Server) verifyRepository(ctx context.Context) {
	if s.claimVerify() {
		s.runVerify(ctx)
	}
}

// claimVerify marks a repository verify as running; false when one runs.
func (s *Server) claimVerify() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.verify.Running {
		return false
	}
	s.verify.Running, s.verify.Start = true, time.Now().UTC()
	return true
}

// runVerify runs the repository verify that claimVerify marked running.
func (s *Server) runVerify(ctx context.Context) {
	s.log.Info("repository verify started")
	rep, err := s.repo.Verify(ctx, blockmap.VerifyOptions{})
	s.mu.Lock()
	v := &s.verify
	v.Running, v.End, v.Error, v.Bad = false, time.Now().UTC(), "", nil
	if err != nil {
		v.Error = err.Error()
	} else {
		v.Blocks, v.Bytes, v.Bad = rep.Blocks, rep.Bytes, rep.Bad
	}
	s.mu.Unlock()
	switch {
	case err != nil:
		s.log.Error("repository verify failed", "error", err)
		if ctx.Err() == nil {
			s.tell(notify.Event{Kind: notify.VerifyDamage, Severity: notify.Failure, Error: "the verify could not run: " + err.Error(), Summary: "repository verify failed"})
		}
		return
	case !rep.OK():
		for _, b := range rep.Bad {
			s.log.Error("repository verify: bad block", "vm", b.VM, "disk", b.Disk, "offset", b.Offset, "generation", b.Gen)
		}
		s.tell(verifyDamageEvent(rep.Bad))
	default:
		s.log.Info("repository verify done: every block matches its hash", "blocks", rep.Blocks, "bytes", rep.Bytes)
	}
	s.metrics.verified(len(rep.Bad))
}

// VerifyNow runs a repository verify in the background unless one runs.
func (s *Server) VerifyNow() error {
	ctx := s.runCtx()
	if ctx == nil || ctx.Err() != nil {
		return fmt.Errorf("server is stopping")
	}
	// Marked running before the answer: a status asked right after it
	// must not show the previous verify as this one's result.
	if !s.claimVerify() {
		return nil
	}
	s.running.Add(1)
	go func() {
		defer s.running.Done()
		s.runVerify(ctx)
	}()
	return nil
}

// backupsSinceSourceVerify counts the successful backups of vm recorded
// in the repository's job log after its last verify against the source.
func (s *Server) backupsSinceSourceVerify(vm string) (int, error) {
	recs, err := backupd.NewJobLog(s.repo.Dir()).List()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range recs {
		if r.VM != vm {
			continue
		}
		switch {
		case r.Kind == backupd.JobVerify && r.End.IsZero():
		case r.Kind == backupd.JobVerify:
			n = 0
		case r.State == backupd.JobOK:
			n++
		}
	}
	return n, nil
}

// maybeVerifySource verifies vm against its source when job's
// VerifySourceEvery backups have run since the last verify: a fresh
// snapshot is read whole and compared with the point just made, which
// catches changes CBT failed to report. With job.Repair a corrected point
// is committed when something was missed.
func (s *Server) maybeVerifySource(ctx context.Context, conn *vsphere.Conn, opts backupd.JobOptions, job Job, r *RunRecord, host string, log *slog.Logger) {
	n, err := s.backupsSinceSourceVerify(r.VM)
	if err != nil {
		log.Warn("verify against source: read the job log", "error", err)
		return
	}
	if n < job.VerifySourceEvery {
		return
	}
	release, err := s.currentSlots().Acquire(ctx, host)
	if err != nil {
		return
	}
	defer release()
	log.Info("verify against source started", "backups_since_last", n)
	rep, err := backupd.VerifyAgainstSource(ctx, s.repo, conn, r.VM, backupd.VerifySourceOptions{JobOptions: opts, Repair: job.Repair})
	result := "ok"
	missed := 0
	switch {
	case err != nil:
		result = "failed: " + err.Error()
		log.Error("verify against source failed", "error", err)
	case !rep.OK():
		for _, d := range rep.Disks {
			missed += len(d.Missed)
		}
		result = "differs"
		if rep.Repaired != "" {
			result = "repaired " + rep.Repaired
		}
		log.Error("verify against source: the VM's disks differ from the point where CBT reported no change",
			"point", rep.Point, "missed_extents", missed, "repaired_point", rep.Repaired)
	default:
		log.Info("verify against source done: the point matches the VM's disks", "point", rep.Point)
	}
	s.update(r, func(r *RunRecord) { r.SourceVerify = result })
	if result != "ok" && ctx.Err() == nil {
		sev := notify.Failure
		if rep != nil && rep.Repaired != "" {
			sev = notify.Warning // CBT missed changes, a corrected point is committed
		}
		s.tell(notify.Event{Kind: notify.SourceVerifyFailed, Severity: sev, Job: job.Name, VM: r.VM, Point: r.Point, Error: "verify against the source: " + result,
			Summary: fmt.Sprintf("verify of %s against its source: %s (job %s)", r.VM, result, job.Name)})
	}
	s.metrics.sourceVerified(r.VM, err == nil, missed)
}
