package notify

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// Defaults of Options.
const (
	DefaultRetries        = 3
	DefaultRetryDelay     = 10 * time.Second
	DefaultRepeatAfter    = 12 * time.Hour
	DefaultQueue          = 64
	DefaultAttemptTimeout = 30 * time.Second
	maxRetryDelay         = 10 * time.Minute
)

// Options configure a Notifier.
type Options struct {
	Targets []TargetConfig
	// Retries are the further attempts after a failed delivery, waiting
	// RetryDelay, then twice that, ... (at most 10m) in between. A
	// permanent error (auth, untrusted certificate, refused message) is
	// not retried. Defaults DefaultRetries and DefaultRetryDelay; a
	// negative Retries means none.
	Retries    int
	RetryDelay time.Duration
	// RepeatAfter suppresses an event equal to one sent less than this
	// long ago (default DefaultRepeatAfter; negative: never suppress).
	RepeatAfter time.Duration
	// Host names this machine in messages (default os.Hostname).
	Host string
	// Queue is each target's queue length (default DefaultQueue); events
	// beyond it are dropped and counted.
	Queue int
	// AttemptTimeout bounds one delivery attempt (default 30s).
	AttemptTimeout time.Duration
	Logger         *slog.Logger
	// Status carries the counters and last results of targets of the same
	// name and type over from a notifier this one replaces (a reload).
	Status []TargetStatus
	// State is what an earlier notifier knew (State): events sent
	// recently are not sent again, and a failing backup that succeeds is
	// told as recovered, across a reload or a restart.
	State *State
}

func (o *Options) defaults() {
	if o.Retries == 0 {
		o.Retries = DefaultRetries
	}
	if o.Retries < 0 {
		o.Retries = 0
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = DefaultRetryDelay
	}
	if o.RepeatAfter == 0 {
		o.RepeatAfter = DefaultRepeatAfter
	}
	if o.Host == "" {
		o.Host, _ = os.Hostname()
	}
	if o.Queue <= 0 {
		o.Queue = DefaultQueue
	}
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = DefaultAttemptTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// TargetStatus is what is known about deliveries to one target (shown by
// cairn status and /api/v1/status).
type TargetStatus struct {
	Name          string    `json:"name"`
	Type          string    `json:"type"`
	Sent          int       `json:"sent"`
	Failed        int       `json:"failed"`  // messages given up after their retries
	Dropped       int       `json:"dropped"` // events lost to a full queue, or abandoned at stop
	LastOK        time.Time `json:"last_ok,omitzero"`
	LastError     string    `json:"last_error,omitempty"`
	LastErrorTime time.Time `json:"last_error_time,omitzero"`
	LastErrorKind Kind      `json:"last_error_kind,omitempty"` // the kind of the event given up
}

type target struct {
	cfg   TargetConfig
	snd   sender
	queue chan Event
	st    TargetStatus
}

// Notifier delivers events to targets in the background (see the
// package doc). The zero value is not usable: call New.
type Notifier struct {
	opts    Options
	targets []*target
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu         sync.Mutex
	closed     bool
	sent       map[string]time.Time // event key -> when last sent (de-duplication)
	failing    map[string]bool      // job\x00vm with a backup failure told
	suppressed int
}

// New starts a notifier with a worker per target; Close stops it.
func New(opts Options) (*Notifier, error) {
	opts.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	n := &Notifier{opts: opts, ctx: ctx, cancel: cancel, sent: map[string]time.Time{}, failing: map[string]bool{}}
	n.restore(opts.State)
	for _, tc := range opts.Targets {
		snd, err := newSender(tc)
		if err != nil {
			cancel()
			return nil, err
		}
		t := &target{cfg: tc, snd: snd, queue: make(chan Event, opts.Queue), st: TargetStatus{Name: tc.Name, Type: tc.Type()}}
		for _, st := range opts.Status {
			if st.Name == tc.Name && st.Type == tc.Type() {
				t.st = st
			}
		}
		n.targets = append(n.targets, t)
		n.wg.Add(1)
		go n.work(t)
	}
	return n, nil
}

// Notify queues ev for every target whose filter matches it and returns
// at once: it never blocks and never fails the caller. A zero Time is
// now. A nil Notifier does nothing.
func (n *Notifier) Notify(ev Event) {
	if n == nil {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	events := []Event{ev}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	fk := ev.Job + "\x00" + ev.VM
	switch ev.Kind {
	case BackupFailed:
		n.failing[fk] = true
	case BackupOK, BackupWarning:
		if n.failing[fk] {
			delete(n.failing, fk)
			events = append(events, Event{Kind: BackupRecovered, Severity: OK, Time: ev.Time, Job: ev.Job, VM: ev.VM, Point: ev.Point,
				Summary: fmt.Sprintf("%s backed up again (job %s)", ev.VM, ev.Job)})
			// The failure may come back: tell it again then.
			prefix := string(BackupFailed) + "\x00" + fk + "\x00"
			for k := range n.sent {
				if strings.HasPrefix(k, prefix) {
					delete(n.sent, k)
				}
			}
		}
	}
	// Info events (a backup done) name a new point each: they never
	// repeat, so they are not kept for de-duplication (nor written into
	// serve's state at every backup).
	if ev.Kind != Test && ev.Kind != Report && ev.Severity != Info && n.opts.RepeatAfter > 0 {
		k := ev.dedupKey()
		if last, ok := n.sent[k]; ok && ev.Time.Sub(last) < n.opts.RepeatAfter {
			n.suppressed++
			n.mu.Unlock()
			n.opts.Logger.Debug("notification suppressed: the same was sent recently", "kind", ev.Kind, "job_name", ev.Job, "vm", ev.VM, "sent", last)
			return
		}
		n.sent[k] = ev.Time
		for k, t := range n.sent { // forget what no longer suppresses
			if ev.Time.Sub(t) >= n.opts.RepeatAfter {
				delete(n.sent, k)
			}
		}
	}
	n.mu.Unlock()
	for _, e := range events {
		for _, t := range n.targets {
			if !t.cfg.Filter.Match(e) {
				continue
			}
			select {
			case t.queue <- e:
			default:
				n.mu.Lock()
				t.st.Dropped++
				n.mu.Unlock()
				n.opts.Logger.Error("notification dropped: the target's queue is full (it has been failing for a while)", "target", t.cfg.Name, "kind", e.Kind, "vm", e.VM)
			}
		}
	}
}

func (n *Notifier) work(t *target) {
	defer n.wg.Done()
	for ev := range t.queue {
		if n.ctx.Err() != nil { // stopped: what is left is abandoned
			n.mu.Lock()
			t.st.Dropped++
			n.mu.Unlock()
			n.opts.Logger.Warn("notification abandoned: the notifier stopped", "target", t.cfg.Name, "kind", ev.Kind, "vm", ev.VM)
			continue
		}
		n.deliver(t, ev)
	}
}

// deliver sends ev to t with retries, and records the outcome.
func (n *Notifier) deliver(t *target, ev Event) {
	log := n.opts.Logger.With("target", t.cfg.Name, "kind", ev.Kind, "job_name", ev.Job, "vm", ev.VM)
	delay := n.opts.RetryDelay
	var err error
	attempt := 0
	for attempt = 1; attempt <= n.opts.Retries+1; attempt++ {
		ctx, cancel := context.WithTimeout(n.ctx, n.opts.AttemptTimeout)
		err = t.snd.send(ctx, ev, n.opts.Host)
		cancel()
		if err == nil {
			n.mu.Lock()
			t.st.Sent++
			t.st.LastOK = time.Now().UTC()
			n.mu.Unlock()
			log.Info("notification sent", "severity", ev.Severity, "attempt", attempt)
			return
		}
		if permanent(err) || n.ctx.Err() != nil || attempt > n.opts.Retries {
			break
		}
		log.Warn("notification failed; retrying", "attempt", attempt, "retry_in", delay.String(), "error", err)
		select {
		case <-n.ctx.Done():
		case <-time.After(delay):
		}
		delay = min(2*delay, maxRetryDelay)
	}
	if n.ctx.Err() != nil && !permanent(err) {
		n.mu.Lock()
		t.st.Dropped++
		n.mu.Unlock()
		log.Warn("notification abandoned: the notifier stopped", "attempts", attempt, "error", err)
		return
	}
	n.mu.Lock()
	t.st.Failed++
	t.st.LastError, t.st.LastErrorTime, t.st.LastErrorKind = err.Error(), time.Now().UTC(), ev.Kind
	n.mu.Unlock()
	args := []any{"attempts", min(attempt, n.opts.Retries+1), "error", err}
	if a := Advice(err); a != "" {
		args = append(args, "advice", a)
	}
	log.Error("notification given up", args...)
}

// Status is each target's delivery status, in config order.
func (n *Notifier) Status() []TargetStatus {
	if n == nil {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]TargetStatus, len(n.targets))
	for i, t := range n.targets {
		out[i] = t.st
	}
	return out
}

// Suppressed counts the events de-duplication held back.
func (n *Notifier) Suppressed() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.suppressed
}

// Close stops taking events, lets the workers deliver what is queued
// until ctx ends, then abandons the rest.
func (n *Notifier) Close(ctx context.Context) {
	if n == nil {
		return
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	n.mu.Unlock()
	for _, t := range n.targets {
		close(t.queue)
	}
	done := make(chan struct{})
	go func() { n.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		n.cancel()
		<-done
	}
	n.cancel()
}

// TestResult is the outcome of a test message to one target.
type TestResult struct {
	Target string
	Type   string
	Err    error  // nil: delivered
	Advice string // the fix, when Err has a known cause
}

// SendTest sends one test message to every target (at once, each within
// timeout, without retries) and reports each outcome.
func SendTest(ctx context.Context, targets []TargetConfig, host string, timeout time.Duration) []TestResult {
	if host == "" {
		host, _ = os.Hostname()
	}
	ev := Event{Kind: Test, Severity: Info, Time: time.Now(), Summary: "test message from cairn notify test: this target works"}
	out := make([]TestResult, len(targets))
	var wg sync.WaitGroup
	for i, tc := range targets {
		out[i] = TestResult{Target: tc.Name, Type: tc.Type()}
		snd, err := newSender(tc)
		if err != nil {
			out[i].Err = err
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			if err := snd.send(c, ev, host); err != nil {
				out[i].Err = &DeliveryError{Target: tc.Name, Err: err}
				out[i].Advice = Advice(err)
			}
		}()
	}
	wg.Wait()
	return out
}
