package notify

import (
	"slices"
	"strings"
	"time"
)

// State is what a Notifier and an RPOTracker know that must outlive
// them, so that a restart neither tells an ongoing breach or failure
// again nor forgets to tell its end: the events sent recently
// (de-duplication), the VMs with a backup failure told and the RPO
// breaches told. It is plain data for JSON (cairn serve keeps it in the
// repository, docs/serve.md).
type State struct {
	Sent        []SentEvent `json:"sent,omitempty"`
	Failing     []JobVM     `json:"backup_failing,omitempty"`
	RPOBreached []Breach    `json:"rpo_breached,omitempty"`
	// RPONoPoint: since when VMs without any point are watched (Told is
	// that time): a restart does not start their RPO afresh.
	RPONoPoint []Breach `json:"rpo_no_point_since,omitempty"`
}

// SentEvent is an event that suppresses an equal one until Time plus
// RepeatAfter.
type SentEvent struct {
	Kind   Kind      `json:"kind"`
	Job    string    `json:"job,omitempty"`
	VM     string    `json:"vm,omitempty"`
	Remote string    `json:"remote,omitempty"`
	Error  string    `json:"error,omitempty"`
	Point  string    `json:"point,omitempty"`
	Time   time.Time `json:"time"`
}

// JobVM names a VM of a job.
type JobVM struct {
	Job string `json:"job"`
	VM  string `json:"vm"`
}

// Breach is a VM whose RPO breach was told at Told.
type Breach struct {
	Job  string    `json:"job"`
	VM   string    `json:"vm"`
	Told time.Time `json:"told"`
}

// dedupKey is the de-duplication key of an event (Event.key and point).
func (ev Event) dedupKey() string { return ev.key() + "\x00" + ev.Point }

func (s SentEvent) key() string {
	return Event{Kind: s.Kind, Job: s.Job, VM: s.VM, Remote: s.Remote, Error: s.Error, Point: s.Point}.dedupKey()
}

// State is what the notifier knows of sent events and failing backups
// (a nil Notifier knows nothing).
func (n *Notifier) State() State {
	var st State
	if n == nil {
		return st
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for k, at := range n.sent {
		f := strings.Split(k, "\x00")
		if len(f) != 6 {
			continue
		}
		st.Sent = append(st.Sent, SentEvent{Kind: Kind(f[0]), Job: f[1], VM: f[2], Remote: f[3], Error: f[4], Point: f[5], Time: at.UTC()})
	}
	for k := range n.failing {
		job, vm, _ := cut0(k)
		st.Failing = append(st.Failing, JobVM{Job: job, VM: vm})
	}
	sortState(&st)
	return st
}

// restore takes over what st knows (Options.State), but the sent events
// that no longer suppress anything.
func (n *Notifier) restore(st *State) {
	if st == nil {
		return
	}
	now := time.Now()
	for _, s := range st.Sent {
		if n.opts.RepeatAfter > 0 && now.Sub(s.Time) < n.opts.RepeatAfter {
			n.sent[s.key()] = s.Time
		}
	}
	for _, f := range st.Failing {
		n.failing[f.Job+"\x00"+f.VM] = true
	}
}

// State lists the breaches told and not yet ended, and since when the
// VMs without any point are watched.
func (t *RPOTracker) State() (breached, noPoint []Breach) {
	t.mu.Lock()
	defer t.mu.Unlock()
	list := func(m map[string]time.Time) []Breach {
		out := make([]Breach, 0, len(m))
		for k, at := range m {
			job, vm, _ := cut0(k)
			out = append(out, Breach{Job: job, VM: vm, Told: at.UTC()})
		}
		return out
	}
	st := State{RPOBreached: list(t.breached), RPONoPoint: list(t.noPoint)}
	sortState(&st)
	return st.RPOBreached, st.RPONoPoint
}

// Restore takes over what an earlier tracker knew (State): breaches told
// are not told again while they last, and their end is told; a VM without
// any point is watched since the earlier time.
func (t *RPOTracker) Restore(breached, noPoint []Breach) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, b := range breached {
		t.breached[b.Job+"\x00"+b.VM] = b.Told
	}
	for _, b := range noPoint {
		t.noPoint[b.Job+"\x00"+b.VM] = b.Told
	}
}

// Forget drops the breaches of the jobs keep does not name (a job that
// left the configuration or lost its RPO): nothing is told of them.
func (t *RPOTracker) Forget(keep map[string]bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range []map[string]time.Time{t.breached, t.noPoint} {
		for k := range m {
			if job, _, _ := cut0(k); !keep[job] {
				delete(m, k)
			}
		}
	}
}

// sortState orders st's lists, so that equal states encode equally.
func sortState(st *State) {
	sortBy(st.Sent, func(s SentEvent) string { return s.key() })
	sortBy(st.Failing, func(f JobVM) string { return f.Job + "\x00" + f.VM })
	sortBy(st.RPOBreached, func(b Breach) string { return b.Job + "\x00" + b.VM })
	sortBy(st.RPONoPoint, func(b Breach) string { return b.Job + "\x00" + b.VM })
}

func sortBy[T any](s []T, key func(T) string) {
	slices.SortFunc(s, func(a, b T) int { return strings.Compare(key(a), key(b)) })
}
