package notify

import (
	"fmt"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/internal/bytesize"
)

// Kind is what happened.
type Kind string

// Event kinds (the "kind" of the webhook payload).
const (
	BackupFailed       Kind = "backup_failed"        // a VM's backup failed after its retries (VM "*": the run could not start)
	BackupWarning      Kind = "backup_warning"       // a VM was backed up, with warnings (quiesce fell back, forced full)
	BackupOK           Kind = "backup_ok"            // a VM was backed up (info)
	BackupRecovered    Kind = "backup_recovered"     // a VM was backed up after a failure notification (ok)
	RetentionFailed    Kind = "retention_failed"     // retention (prune) of a VM failed
	SourceVerifyFailed Kind = "source_verify_failed" // a verify against the source failed or found changes CBT missed
	VerifyDamage       Kind = "verify_damage"        // the repository verify found bad blocks or could not run
	ReplicateFailed    Kind = "replicate_failed"     // a replication to a remote failed
	VerifyRemoteFailed Kind = "verify_remote_failed" // a remote verify failed or found damage
	BootCheckFailed    Kind = "boot_check_failed"    // a point did not boot (or the check could not run)
	SuspiciousChanges  Kind = "suspicious_changes"   // a new point's changes look encrypted far beyond the VM's usual (backupd/anomaly)
	RPOMissed          Kind = "rpo_missed"           // a VM has no point younger than its RPO
	RPORecovered       Kind = "rpo_recovered"        // ... and now has one again (ok)
	Report             Kind = "report"               // the daily summary (info)
	Test               Kind = "test"                 // cairn notify test (info)
)

// Severity is how bad an event is.
type Severity string

// Severities, worst first. OK marks a recovery.
const (
	Failure Severity = "failure"
	Warning Severity = "warning"
	Info    Severity = "info"
	OK      Severity = "ok"
)

// ParseSeverity checks a severity name of a target's on: list ("report"
// is accepted too: it selects the daily report).
func ParseSeverity(s string) (Severity, error) {
	switch Severity(s) {
	case Failure, Warning, Info, OK, "report":
		return Severity(s), nil
	}
	return "", fmt.Errorf("%w %q: use failure, warning, info, ok or report", ErrBadSeverity, s)
}

// Event is one thing to tell.
type Event struct {
	Kind     Kind
	Severity Severity
	Time     time.Time
	Job      string
	VM       string
	Point    string
	Remote   string
	Error    string // the error or warning text ("" for info)
	Attempts int    // attempts of a failed backup
	// Summary is a one-line human description (the e-mail subject's tail).
	Summary string
	// Details are further facts (bytes, RPO, reasons), shown as given.
	Details map[string]string
	// Report is the daily summary's table (kind report only).
	Report []ReportLine
}

// ReportLine is one VM of the daily report.
type ReportLine struct {
	VM          string    `json:"vm"`
	Points      int       `json:"points"`
	LastPoint   string    `json:"last_point,omitempty"`
	LastTime    time.Time `json:"last_point_time,omitzero"`
	LastResult  string    `json:"last_result,omitempty"` // ok, failed: ERROR, or ""
	StoredBytes int64     `json:"stored_bytes"`
}

// Payload is the JSON body a webhook receives (schema cairn.notify/v1;
// docs/serve.md documents every field; fields are only ever added).
type Payload struct {
	Schema   string            `json:"schema"` // "cairn.notify/v1"
	Kind     Kind              `json:"kind"`
	Severity Severity          `json:"severity"`
	Title    string            `json:"title"`
	Time     time.Time         `json:"time"`
	Host     string            `json:"host"` // the machine cairn serve runs on
	Job      string            `json:"job,omitempty"`
	VM       string            `json:"vm,omitempty"`
	Point    string            `json:"point,omitempty"`
	Remote   string            `json:"remote,omitempty"`
	Error    string            `json:"error,omitempty"`
	Attempts int               `json:"attempts,omitempty"`
	Details  map[string]string `json:"details,omitempty"`
	Report   []ReportLine      `json:"report,omitempty"`
}

// SchemaVersion is the Payload's schema name.
const SchemaVersion = "cairn.notify/v1"

// payload is ev as the webhook's JSON.
func (ev Event) payload(host string) Payload {
	return Payload{
		Schema: SchemaVersion, Kind: ev.Kind, Severity: ev.Severity, Title: ev.Title(), Time: ev.Time.UTC(), Host: host,
		Job: ev.Job, VM: ev.VM, Point: ev.Point, Remote: ev.Remote, Error: ev.Error, Attempts: ev.Attempts,
		Details: ev.Details, Report: ev.Report,
	}
}

// Title is the event's one-line headline, like "FAILURE: backup of web-1
// (job nightly) failed".
func (ev Event) Title() string {
	s := ev.Summary
	if s == "" {
		s = strings.ReplaceAll(string(ev.Kind), "_", " ")
		if ev.VM != "" {
			s += " " + ev.VM
		}
		if ev.Job != "" {
			s += " (job " + ev.Job + ")"
		}
	}
	return strings.ToUpper(string(ev.Severity)) + ": " + s
}

// Text is the event as plain text (the e-mail body and Slack's text).
func (ev Event) Text(host string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", ev.Title())
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%-10s %s\n", k+":", v)
		}
	}
	row("kind", string(ev.Kind))
	row("severity", string(ev.Severity))
	row("time", ev.Time.UTC().Format(time.RFC3339))
	row("host", host)
	row("job", ev.Job)
	row("vm", ev.VM)
	row("point", ev.Point)
	row("remote", ev.Remote)
	if ev.Attempts > 0 {
		row("attempts", fmt.Sprint(ev.Attempts))
	}
	row("error", ev.Error)
	keys := sortedKeys(ev.Details)
	for _, k := range keys {
		row(k, ev.Details[k])
	}
	if len(ev.Report) > 0 {
		fmt.Fprintf(&b, "\n%-24s %6s  %-22s %-12s %s\n", "VM", "POINTS", "LAST POINT", "STORED", "LAST RESULT")
		for _, l := range ev.Report {
			last := l.LastPoint
			if last == "" {
				last = "-"
			}
			fmt.Fprintf(&b, "%-24s %6d  %-22s %-12s %s\n", l.VM, l.Points, last, bytesize.IEC(l.StoredBytes), l.LastResult)
		}
	}
	return b.String()
}

// key identifies equal events for de-duplication.
func (ev Event) key() string {
	return strings.Join([]string{string(ev.Kind), ev.Job, ev.VM, ev.Remote, ev.Error}, "\x00")
}
