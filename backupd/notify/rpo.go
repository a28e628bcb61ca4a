package notify

import (
	"fmt"
	"sync"
	"time"
)

// RPOObservation is what is known about one VM of a job at a check.
type RPOObservation struct {
	Job, VM string
	RPO     time.Duration
	// Latest is the time of the VM's newest point (zero: it has none)
	// and LatestPoint its id.
	Latest      time.Time
	LatestPoint string
	// Watched is since when the VM is expected to have points (serve's
	// start): a VM without any point breaches RPO after Watched+RPO.
	Watched time.Time
}

// RPOTracker turns periodic observations into events: one RPOMissed when
// a VM's newest point becomes older than its RPO, one RPORecovered when
// a younger point appears; nothing in between (no repeat storm). Safe
// for concurrent use.
type RPOTracker struct {
	mu       sync.Mutex
	breached map[string]time.Time // job\x00vm -> when the breach was told
	// noPoint: since when a VM without any point is watched (the earliest
	// Watched seen, kept across restarts through State, so that restarts
	// do not put its breach off for ever)
	noPoint map[string]time.Time
}

// NewRPOTracker returns a tracker with no breach known.
func NewRPOTracker() *RPOTracker {
	return &RPOTracker{breached: map[string]time.Time{}, noPoint: map[string]time.Time{}}
}

// Observe compares each observation with now and returns the events of
// the VMs whose state changed. VMs of the observed jobs that are no
// longer observed (left the job) are forgotten without an event.
func (t *RPOTracker) Observe(now time.Time, obs []RPOObservation) []Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Event
	seen := map[string]bool{}
	jobs := map[string]bool{}
	for _, o := range obs {
		k := o.Job + "\x00" + o.VM
		seen[k], jobs[o.Job] = true, true
		if o.RPO <= 0 {
			delete(t.breached, k)
			delete(t.noPoint, k)
			continue
		}
		ref := o.Latest
		if ref.IsZero() {
			ref = o.Watched
			if since, ok := t.noPoint[k]; ok && since.Before(ref) {
				ref = since
			} else {
				t.noPoint[k] = ref
			}
		} else {
			delete(t.noPoint, k)
		}
		age := now.Sub(ref)
		details := map[string]string{"rpo": o.RPO.String()}
		if !o.Latest.IsZero() {
			details["last_point_time"] = o.Latest.UTC().Format(time.RFC3339)
			details["age"] = age.Round(time.Second).String()
		}
		since, breached := t.breached[k]
		switch {
		case age > o.RPO && !breached:
			t.breached[k] = now
			msg := fmt.Sprintf("newest point %s is %s old, more than the RPO of %s", o.LatestPoint, age.Round(time.Second), o.RPO)
			if o.Latest.IsZero() {
				msg = fmt.Sprintf("no point at all since %s (RPO %s)", ref.UTC().Format(time.RFC3339), o.RPO)
			}
			out = append(out, Event{Kind: RPOMissed, Severity: Failure, Time: now, Job: o.Job, VM: o.VM, Point: o.LatestPoint,
				Error: msg, Details: details, Summary: fmt.Sprintf("RPO missed: %s has no point younger than %s (job %s)", o.VM, o.RPO, o.Job)})
		case age <= o.RPO && breached && !o.Latest.IsZero():
			// (a VM without any point has not recovered: its Watched
			// restarts with serve, a told breach does not)
			delete(t.breached, k)
			details["breach_told"] = since.UTC().Format(time.RFC3339)
			out = append(out, Event{Kind: RPORecovered, Severity: OK, Time: now, Job: o.Job, VM: o.VM, Point: o.LatestPoint,
				Details: details, Summary: fmt.Sprintf("RPO met again: %s has point %s (job %s)", o.VM, o.LatestPoint, o.Job)})
		}
	}
	for _, m := range []map[string]time.Time{t.breached, t.noPoint} {
		for k := range m {
			job, _, _ := cut0(k)
			if jobs[job] && !seen[k] {
				delete(m, k)
			}
		}
	}
	return out
}

// Breached counts the VMs (of a job) in breach.
func (t *RPOTracker) Breached() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.breached)
}

func cut0(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
