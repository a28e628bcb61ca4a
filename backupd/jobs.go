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
}

// JobLog is the job history of a repository.
type JobLog struct {
	dir string
	mu  sync.Mutex
}

// NewJobLog returns the job log of the repository in repoDir.
func NewJobLog(repoDir string) *JobLog { return &JobLog{dir: filepath.Join(repoDir, "jobs")} }

func (l *JobLog) path() string { return filepath.Join(l.dir, "jobs.jsonl") }

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
	if err := os.MkdirAll(l.dir, 0o755); err != nil {
		return fmt.Errorf("job log: %w", err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("job log: %w", err)
	}
	f, err := os.OpenFile(l.path(), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
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
func (l *JobLog) List() ([]JobRecord, error) {
	f, err := os.Open(l.path())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("job log: %w", err)
	}
	defer f.Close()
	byID := map[string]JobRecord{}
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
		return nil, fmt.Errorf("job log: %w", err)
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

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
