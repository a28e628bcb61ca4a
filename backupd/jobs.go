package backupd

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
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
)

// Job kinds.
const (
	JobBackup = "backup"
	JobVerify = "verify-source"
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
	PID          int       `json:"pid,omitempty"`
	Host         string    `json:"host,omitempty"`
	// Target is the VM a finished restore wrote (a new VM, the replaced or
	// rolled-back one, or the VM that received a disk).
	Target string `json:"target,omitempty"`
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
// this host is gone is shown as interrupted. A damaged line is skipped.
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
	out := make([]JobRecord, 0, len(byID))
	for _, r := range byID {
		if r.State == JobRunning && r.Host == host && !processAlive(r.PID) {
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

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
