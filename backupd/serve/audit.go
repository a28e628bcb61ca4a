package serve

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// AuditFileName is the audit log in the repository: one JSON object a
// line (AuditEvent), mode 0600. When it passes AuditMaxBytes it becomes
// audit.log.1 (the older ones move up to audit.log.AuditKeep, the oldest
// is dropped), so the log never takes more than (AuditKeep+1) times
// AuditMaxBytes.
const AuditFileName = "audit.log"

// Bounds of the audit log.
const (
	AuditMaxBytes = 8 << 20
	AuditKeep     = 3
)

// Kinds of audit events.
const (
	AuditRequest  = "request"  // a mutating request (POST): backup, verify, restore, download ticket
	AuditDownload = "download" // a guest file downloaded with a ticket
	AuditAuth     = "auth"     // a refused token (missing, wrong, expired)
	AuditDenied   = "denied"   // a valid token whose role may not use the route
)

// AuditEvent is one line of the audit log. It never holds a secret: the
// token is named, a ticket is not written.
type AuditEvent struct {
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"`
	Token  string    `json:"token,omitempty"` // the token's name
	Role   string    `json:"role,omitempty"`
	Remote string    `json:"remote"`
	Method string    `json:"method"`
	Route  string    `json:"route"` // the route's pattern, or the path when none matched
	VM     string    `json:"vm,omitempty"`
	Point  string    `json:"point,omitempty"`
	FS     string    `json:"fs,omitempty"`
	Path   string    `json:"path,omitempty"`
	Job    string    `json:"job,omitempty"`
	// Detail says more: the kind of restore, why a token was refused.
	Detail string `json:"detail,omitempty"`
	Status int    `json:"status"`
	Bytes  int64  `json:"bytes,omitempty"` // of a download
}

// auditLog appends events to the repository's audit log.
type auditLog struct {
	path string
	max  int64
	log  *slog.Logger
	mu   sync.Mutex
}

func newAuditLog(repoDir string, log *slog.Logger) *auditLog {
	return &auditLog{path: filepath.Join(repoDir, AuditFileName), max: AuditMaxBytes, log: log}
}

// add appends e; a failure is logged (the request is answered anyway:
// the audit log must not become a way to stop backups).
func (a *auditLog) add(e AuditEvent) {
	if a == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	line, err := json.Marshal(e.clean()) // hardening.go: no forged lines
	if err != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.append(append(line, '\n')); err != nil {
		a.log.Error("cannot write the audit log", "file", a.path, "error", err)
	}
}

func (a *auditLog) append(line []byte) error {
	if fi, err := os.Stat(a.path); err == nil && fi.Size()+int64(len(line)) > a.max {
		for i := AuditKeep - 1; i >= 1; i-- {
			_ = os.Rename(a.path+"."+strconv.Itoa(i), a.path+"."+strconv.Itoa(i+1))
		}
		if err := os.Rename(a.path, a.path+".1"); err != nil {
			return fmt.Errorf("rotate: %w", err)
		}
	}
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(line); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadAudit returns the events of the repository's audit log (the
// rotated files too, oldest first) at or after since (zero: all). A
// damaged line is skipped and counted in skipped.
func ReadAudit(repoDir string, since time.Time) (events []AuditEvent, skipped int, err error) {
	base := filepath.Join(repoDir, AuditFileName)
	files := []string{}
	for i := AuditKeep; i >= 1; i-- {
		files = append(files, base+"."+strconv.Itoa(i))
	}
	files = append(files, base)
	for _, name := range files {
		f, err := os.Open(name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, 0, fmt.Errorf("read the audit log: %w (run as the repository's owner)", err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var e AuditEvent
			if json.Unmarshal(sc.Bytes(), &e) != nil {
				skipped++
				continue
			}
			if since.IsZero() || !e.Time.Before(since) {
				events = append(events, e)
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, 0, fmt.Errorf("read %s: %w", name, err)
		}
	}
	return events, skipped, nil
}
