package serve

import (
	"github.com/cairnbackup/cairn/backupd"
)

// startReplicationJob records a replicate run in the repository's job log
// (cairn jobs, beside backups and restores, under the run's id) and
// returns what records its end from the run's record.
func (s *Server) startReplicationJob(rec *ReplicationRecord) func(err error) {
	if s.repo == nil {
		return func(error) {}
	}
	s.repl.mu.Lock()
	jr := backupd.JobRecord{ID: rec.ID, Kind: backupd.JobReplicate, Remote: rec.Remote, ServeJob: rec.Job, Start: rec.Start}
	jr.SetVMs(rec.VMs)
	s.repl.mu.Unlock()
	end := backupd.StartJob(s.repo.Dir(), jr)
	return func(err error) {
		end(err, func(r *backupd.JobRecord) {
			s.repl.mu.Lock()
			defer s.repl.mu.Unlock()
			r.SetVMs(rec.VMs)
			r.Points, r.PointsPresent, r.BytesUploaded = rec.Replicated, rec.Present, rec.BytesUploaded
			r.BytesRead = rec.BytesRead
		})
	}
}

// startVerifyJob records a remote verify run in the repository's job log
// (cairn jobs) under the run's id and returns what records its end.
func (s *Server) startVerifyJob(rec *ReplicationRecord) func(err error) {
	if s.repo == nil {
		return func(error) {}
	}
	end := backupd.StartJob(s.repo.Dir(), backupd.JobRecord{ID: rec.ID, Kind: backupd.JobVerifyRemote, Remote: rec.Remote, ServeJob: rec.Job, Start: rec.Start})
	return func(err error) { end(err, nil) }
}
