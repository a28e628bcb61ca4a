package serve

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/cairnbackup/cairn/backupd/schedule"
)

// timers remembers, across reloads, when each scheduled task last began
// and whether it still runs, so that a reload neither waits for running
// tasks nor starts them again: the timers of the new configuration
// follow on from the old ones. Keys are like "job/NAME".
type timers struct {
	mu    sync.Mutex
	tasks map[string]*timedTask
	// file and saved are the backup jobs' last scheduled runs of earlier
	// servers, for catching up a missed cron time (catchup.go).
	file  string
	saved map[string]time.Time
}

type timedTask struct {
	created time.Time     // when its first timer started
	began   time.Time     // when its last run began (zero: never since start)
	done    chan struct{} // closed when that run ended (nil: none yet)
}

func (t *timers) task(key string) *timedTask {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tasks == nil {
		t.tasks = map[string]*timedTask{}
	}
	tk := t.tasks[key]
	if tk == nil {
		tk = &timedTask{created: time.Now()}
		t.tasks[key] = tk
	}
	return tk
}

// first is the first run time of a timer starting now: the schedule's
// next time after the task's last run when it ran since the server
// started (a reload), else now for an interval (when atStart), one
// interval after the task's first timer started for one that is not run
// at start, or the cron expression's next time.
func (t *timers) first(key string, sc schedule.Schedule, atStart bool, now time.Time) time.Time {
	tk := t.task(key)
	t.mu.Lock()
	began, created := tk.began, tk.created
	t.mu.Unlock()
	if !began.IsZero() {
		if sc.RunAtStart() { // an interval: its time after the last run
			if t := sc.Next(began); t.After(now) {
				return t
			}
			return now
		}
		return sc.Next(now)
	}
	if atStart && sc.RunAtStart() {
		return now
	}
	if _, missed := t.missedRun(key, sc, now); missed {
		return now // once: the time that passed while serve was stopped
	}
	if sc.RunAtStart() {
		// An interval that waits one interval first (the repository
		// verify): from when its first timer started, so that reloads do
		// not put it off again and again.
		if t := sc.Next(created); t.After(now) {
			return t
		}
		return now
	}
	return sc.Next(now)
}

// runOnSchedule runs run on sc until ctx (the timers' context) ends. Each
// run goes on in the background under the server's context (a reload
// does not abort it; s.running tracks it); a run still going when its
// next time comes, perhaps started under the previous configuration, is
// waited for and the next one starts right after it. onNext, when given,
// hears each next run time.
func (s *Server) runOnSchedule(ctx context.Context, key string, sc schedule.Schedule, atStart bool, onNext func(time.Time), run func(context.Context)) {
	tk := s.timers.task(key)
	now := time.Now()
	next := s.timers.first(key, sc, atStart, now)
	if missed, ok := s.timers.missedRun(key, sc, now); ok && next.Equal(now) {
		s.log.Info("catching up a scheduled run missed while cairn serve was stopped", "task", key, "missed", missed.UTC())
	}
	for {
		if onNext != nil {
			onNext(next)
		}
		if !sleepUntil(ctx, next) {
			return
		}
		s.timers.mu.Lock()
		prev := tk.done
		s.timers.mu.Unlock()
		if prev != nil {
			select {
			case <-prev:
			case <-ctx.Done():
				return
			}
		}
		rctx := s.runCtx()
		if rctx.Err() != nil {
			return
		}
		began := time.Now()
		done := make(chan struct{})
		s.timers.mu.Lock()
		tk.began, tk.done = began, done
		s.timers.mu.Unlock()
		if strings.HasPrefix(key, "job/") {
			if err := s.timers.saveSchedule(); err != nil {
				s.log.Warn("cannot record the job's run for catching up after a restart", "error", err)
			}
		}
		s.running.Add(1)
		go func() {
			defer s.running.Done()
			defer close(done)
			run(rctx)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			return
		}
		// The next time after this run began: a run that outlasted it is
		// followed at once by the next one.
		next = sc.Next(began)
	}
}
