package backupd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Job states.
const (
	JobRunning     = "running"
	JobOK          = "ok"
	JobFailed      = "failed"
	JobInterrupted = "interrupted" // running, but its process is gone
	// JobCancelled is a job stopped on purpose before it ended (Ctrl-C,
	// SIGTERM, a stopping cairn serve): no failure, nothing committed by
	// it half-way.
	JobCancelled = "cancelled"
	// JobSkipped is a backup a pre hook skipped (policy skip,
	// ErrSkippedByHook): no failure, nothing backed up.
	JobSkipped = "skipped"
)

// Cancelled marks err, the error a job ended with, as its cancellation
// when ctx, the job's context, was cancelled (not timed out): the job log
// then records the job as cancelled, not failed. The text stays err's.
func Cancelled(ctx context.Context, err error) error {
	if err == nil || !errors.Is(ctx.Err(), context.Canceled) {
		return err
	}
	var ce *cancelledError
	if errors.As(err, &ce) {
		return err
	}
	return &cancelledError{err: err, cause: ctx.Err()}
}

type cancelledError struct{ err, cause error }

func (e *cancelledError) Error() string   { return e.err.Error() }
func (e *cancelledError) Unwrap() []error { return []error{e.err, e.cause} }

// EndState is the state a job that ended with err is recorded with: ok,
// cancelled (err marked by Cancelled) or failed.
func EndState(err error) string {
	var ce *cancelledError
	switch {
	case err == nil:
		return JobOK
	case errors.As(err, &ce):
		return JobCancelled
	case errors.Is(err, ErrSkippedByHook):
		return JobSkipped
	}
	return JobFailed
}

// Job kinds.
const (
	JobBackup = "backup"
	JobVerify = "verify-source"
	// JobImport is cairn import: images, devices or NBD exports read into
	// a new point.
	JobImport = "import"
	// JobReplicate copies points to a remote (cairn replicate, and the
	// replicate: runs of cairn serve); JobPull brings points back from one
	// (cairn pull).
	JobReplicate = "replicate"
	JobPull      = "pull"
	// JobVerifyRemote reads a remote's objects back (cairn verify
	// --remote, and the verify runs of a serve job's replicate: section).
	JobVerifyRemote = "verify-remote"
	// JobInstant is a step of an instant recovery session (cairn restore
	// instant, POST /api/v1/instant): Action start, migrate or stop.
	JobInstant = "instant"
)

// JobRecord is one line of <repo>/jobs/jobs.jsonl. A job writes a running
// record when it starts and its final record when it ends; the last line
// of an id wins.
type JobRecord struct {
	ID           string    `json:"id"`
	Kind         string    `json:"kind,omitempty"`
	VM           string    `json:"vm"`
	VCenter      string    `json:"vcenter,omitempty"`
	Start        time.Time `json:"start"`
	End          time.Time `json:"end,omitzero"`
	State        string    `json:"state"`
	Point        string    `json:"point,omitempty"`
	Consistency  string    `json:"consistency,omitempty"`
	BytesRead    int64     `json:"bytes_read"`
	BytesWritten int64     `json:"bytes_written"`
	Error        string    `json:"error,omitempty"`
	// Warnings of a backup that committed its point (disks left out), and
	// hooks that failed without stopping it.
	Warnings []string `json:"warnings,omitempty"`
	// Hooks are the administrator's hooks that ran around a backup.
	Hooks []HookResult `json:"hooks,omitempty"`
	PID   int          `json:"pid,omitempty"`
	Host  string       `json:"host,omitempty"`
	// RepoDev and RepoIno identify the repository directory the writer
	// ran on: a copy of the repository (cp -a, rsync, tar while a job
	// runs) carries the running record along, and the job does not run
	// there.
	RepoDev uint64 `json:"repo_dev,omitempty"`
	RepoIno uint64 `json:"repo_ino,omitempty"`
	// Target is the VM a finished restore wrote (a new VM, the replaced or
	// rolled-back one, or the VM that received a disk).
	Target string `json:"target,omitempty"`
	// Remote is the remote a replicate or pull job copied to or from.
	Remote string `json:"remote,omitempty"`
	// VMs are the VMs of a job that may concern several (replicate, pull);
	// VM is set too when they are one.
	VMs []string `json:"vms,omitempty"`
	// ServeJob is the cairn serve job whose replicate: section ran it.
	ServeJob string `json:"serve_job,omitempty"`
	// Points counts the points a replicate or pull copied; PointsPresent
	// those that were there already.
	Points        int `json:"points,omitempty"`
	PointsPresent int `json:"points_present,omitempty"`
	// BytesUploaded are the bytes a replicate wrote to the remote's store;
	// BytesDownloaded those a pull read from it. (BytesRead and
	// BytesWritten stay the local side: read from the repository or a
	// source, stored in the repository.)
	BytesUploaded   int64 `json:"bytes_uploaded,omitempty"`
	BytesDownloaded int64 `json:"bytes_downloaded,omitempty"`
	// Action is the step of an instant recovery session a JobInstant
	// record is (start, migrate, stop); Datastore the NFS datastore it ran
	// from, or for migrate the datastore the VM moved to.
	Action    string `json:"action,omitempty"`
	Datastore string `json:"datastore,omitempty"`
}

// SetVMs sets VMs (sorted, without repeats) and VM when they are one.
func (r *JobRecord) SetVMs(vms []string) {
	vms = slices.Clone(vms)
	slices.Sort(vms)
	r.VMs = slices.Compact(vms)
	r.VM = ""
	if len(r.VMs) == 1 {
		r.VM = r.VMs[0]
	}
}

// Describe is the job's VM(s) and, beside a backup, what kind of job it
// was: "web", "web (restore to web-copy)", "a, b (replicate to offsite)",
// "web (pull from offsite)", "- (verify of offsite)", "web (import)",
// "web (instant migrate of web-instant to ds1)".
func (r JobRecord) Describe() string {
	vm := r.VM
	if len(r.VMs) > 1 {
		const show = 3
		vm = strings.Join(r.VMs[:min(show, len(r.VMs))], ", ")
		if len(r.VMs) > show {
			vm += fmt.Sprintf(" +%d more", len(r.VMs)-show)
		}
	}
	if vm == "" {
		vm = "-"
	}
	switch {
	case r.Kind == "" || r.Kind == JobBackup:
		return vm
	case r.Kind == JobReplicate && r.Remote != "":
		return vm + " (replicate to " + r.Remote + ")"
	case r.Kind == JobPull && r.Remote != "":
		return vm + " (pull from " + r.Remote + ")"
	case r.Kind == JobVerifyRemote && r.Remote != "":
		return vm + " (verify of " + r.Remote + ")"
	case r.Kind == JobInstant && r.Action != "":
		to := ""
		if r.Action == "migrate" && r.Datastore != "" {
			to = " to " + r.Datastore
		}
		return vm + " (instant " + r.Action + describeTarget(r.Target) + to + ")"
	case r.Target != "":
		return vm + " (" + r.Kind + " to " + r.Target + ")" // where a restore went
	}
	return vm + " (" + r.Kind + ")"
}

func describeTarget(t string) string {
	if t == "" {
		return ""
	}
	return " of " + t
}

// StartJob records a job as running in the job log of the repository in
// repoDir and returns the function that records its end: err's text, or
// ok, with what fill sets on the record (bytes, points); an err marked by
// Cancelled is recorded as cancelled. A failure to write the log is
// logged, never the job's failure.
func StartJob(repoDir string, rec JobRecord) (end func(err error, fill func(*JobRecord))) {
	jobs := NewJobLog(repoDir)
	if rec.ID == "" {
		rec.ID = NewJobID()
	}
	if rec.Start.IsZero() {
		rec.Start = time.Now().UTC()
	}
	rec.State = JobRunning
	if err := jobs.Append(rec); err != nil {
		slog.Warn("cannot record the job", "kind", rec.Kind, "error", err)
	}
	return func(err error, fill func(*JobRecord)) {
		if fill != nil {
			fill(&rec)
		}
		rec.End, rec.State = time.Now().UTC(), EndState(err)
		if err != nil {
			rec.Error = err.Error()
		}
		if aerr := jobs.Append(rec); aerr != nil {
			slog.Warn("cannot record the job", "kind", rec.Kind, "error", aerr)
		}
	}
}

// JobLog is the job history of a repository.
type JobLog struct {
	dir string
	mu  sync.Mutex
	// rotateAt is the size at which jobs.jsonl becomes jobs.1.jsonl
	// (replacing the previous one), so the log stays bounded.
	rotateAt int64
}

// JobLogRotateAt is the default size at which the job log is rotated:
// about 50,000 jobs in each of the two files kept.
const JobLogRotateAt = 16 << 20

// NewJobLog returns the job log of the repository in repoDir.
func NewJobLog(repoDir string) *JobLog {
	return &JobLog{dir: filepath.Join(repoDir, "jobs"), rotateAt: JobLogRotateAt}
}

func (l *JobLog) path() string    { return filepath.Join(l.dir, "jobs.jsonl") }
func (l *JobLog) oldPath() string { return filepath.Join(l.dir, "jobs.1.jsonl") }

// Append writes one record as one line (O_APPEND, so concurrent
// processes do not interleave lines).
func (l *JobLog) Append(r JobRecord) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.PID == 0 {
		r.PID = os.Getpid()
	}
	if r.Host == "" {
		r.Host, _ = os.Hostname()
	}
	if err := os.MkdirAll(l.dir, 0o700); err != nil {
		return fmt.Errorf("job log: %w", err)
	}
	if r.RepoIno == 0 {
		r.RepoDev, r.RepoIno = dirIdentity(filepath.Dir(l.dir))
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("job log: %w", err)
	}
	// Processes append at once (O_APPEND keeps lines whole); the lock
	// keeps two of them from rotating the same full file twice.
	lock, err := os.OpenFile(filepath.Join(l.dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("job log: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("job log: lock: %w", err)
	}
	if st, err := os.Stat(l.path()); err == nil && l.rotateAt > 0 && st.Size() >= l.rotateAt {
		if err := os.Rename(l.path(), l.oldPath()); err != nil {
			return fmt.Errorf("job log: rotate: %w", err)
		}
	}
	f, err := os.OpenFile(l.path(), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("job log: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("job log: %w", err)
	}
	return f.Close()
}

// List returns the jobs, oldest first; a running job whose process on
// this host is gone, or whose writer ran on another repository directory
// (this is a copy), is shown as interrupted. A damaged line is skipped.
// The rotated file is read first, so a job begun before a rotation and
// ended after it shows its final record.
func (l *JobLog) List() ([]JobRecord, error) {
	byID := map[string]JobRecord{}
	for _, p := range []string{l.oldPath(), l.path()} {
		if err := readJobFile(p, byID); err != nil {
			return nil, err
		}
	}
	host, _ := os.Hostname()
	dev, ino := dirIdentity(filepath.Dir(l.dir))
	out := make([]JobRecord, 0, len(byID))
	for _, r := range byID {
		if r.State == JobRunning && (r.Host == host && !processAlive(r.PID) || copied(r, host, dev, ino)) {
			r.State = JobInterrupted
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, k int) bool {
		if !out[i].Start.Equal(out[k].Start) {
			return out[i].Start.Before(out[k].Start)
		}
		return out[i].ID < out[k].ID
	})
	return out, nil
}

// readJobFile adds the records of one job log file to byID (later lines
// win); a missing file adds nothing.
func readJobFile(path string, byID map[string]JobRecord) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("job log: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var r JobRecord
		if json.Unmarshal(sc.Bytes(), &r) != nil || r.ID == "" {
			continue
		}
		byID[r.ID] = r
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("job log %s: %w", path, err)
	}
	return nil
}

// copied reports whether running record r was written on another
// repository directory than this one (device dev, inode ino): the
// repository was copied while the job ran. On another host (a repository
// on NFS) only the inode is compared, as each client numbers the device
// of its mount itself. Records without the identity (older cairn) and an
// unknown identity of this directory are not copies.
func copied(r JobRecord, host string, dev, ino uint64) bool {
	if r.RepoIno == 0 || ino == 0 {
		return false
	}
	if r.Host == host {
		return r.RepoDev != dev || r.RepoIno != ino
	}
	return r.RepoIno != ino
}

// dirIdentity is the device and inode of dir (0, 0 when unknown).
func dirIdentity(dir string) (dev, ino uint64) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return 0, 0
	}
	return uint64(st.Dev), st.Ino
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
