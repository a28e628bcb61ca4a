package ratelimit

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// MaxChunk is the most bytes a reader takes from the bucket at once
// (Reader caps each Read to Chunk of the rate in force): a body streams
// in chunks, never as one burst of a whole object.
const MaxChunk = 64 << 10

// burstTime is how much of the rate the bucket holds: a run idle for a
// while may send a tenth of a second's worth (at least one chunk) at once.
const burstTime = 100 * time.Millisecond

// Clock is where a Limiter reads the time and sleeps.
type Clock interface {
	Now() time.Time
	// Sleep waits d or until ctx is done (then it returns ctx's error).
	Sleep(ctx context.Context, d time.Duration) error
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Limiter is a token bucket shared by the transfers of one run: the
// bytes every caller of Wait takes together pass at the Schedule's rate.
// It is safe for concurrent use.
type Limiter struct {
	sched Schedule
	clock Clock

	mu  sync.Mutex
	tat time.Time // when the bytes granted so far have all passed at the rate

	granted atomic.Int64 // bytes Wait granted
	waited  atomic.Int64 // nanoseconds Wait asked callers to sleep
}

// New makes a limiter of schedule s on the real clock.
func New(s Schedule) *Limiter { return NewWithClock(s, realClock{}) }

// NewWithClock makes a limiter of schedule s on clock c (tests).
func NewWithClock(s Schedule, c Clock) *Limiter { return &Limiter{sched: s, clock: c} }

// Schedule is the limiter's schedule.
func (l *Limiter) Schedule() Schedule { return l.sched }

// Now is the rate in force now.
func (l *Limiter) Now() Rate { return l.sched.At(l.clock.Now()) }

// Chunk is the most bytes a caller should take at once at rate r: a
// sixteenth of a second's worth, between 1 KiB and MaxChunk.
func Chunk(r Rate) int {
	if r <= 0 {
		return MaxChunk
	}
	return int(min(max(int64(r)/16, 1<<10), MaxChunk))
}

// Wait takes n bytes' worth of tokens and sleeps until the bytes may
// pass. Before sleeping it calls before (when not nil) with how long it
// will sleep, so that a caller can move a deadline that should not count
// the wait. When ctx ends first, Wait returns its error and gives the
// tokens back.
func (l *Limiter) Wait(ctx context.Context, n int, before func(time.Duration)) error {
	if n <= 0 {
		return nil
	}
	l.mu.Lock()
	now := l.clock.Now()
	r := l.sched.At(now)
	if r <= 0 {
		l.tat = now
		l.mu.Unlock()
		l.granted.Add(int64(n))
		return nil
	}
	if l.tat.Before(now) {
		l.tat = now
	}
	cost := time.Duration(float64(n) / float64(r) * float64(time.Second))
	l.tat = l.tat.Add(cost)
	burst := max(burstTime, time.Duration(float64(Chunk(r))/float64(r)*float64(time.Second)))
	d := l.tat.Sub(now) - burst
	l.mu.Unlock()
	l.granted.Add(int64(n))
	if d <= 0 {
		return nil
	}
	if before != nil {
		before(d)
	}
	l.waited.Add(int64(d))
	if err := l.clock.Sleep(ctx, d); err != nil {
		l.mu.Lock()
		l.tat = l.tat.Add(-cost)
		l.mu.Unlock()
		l.granted.Add(-int64(n))
		return err
	}
	return nil
}

// Granted is how many bytes Wait has let through.
func (l *Limiter) Granted() int64 { return l.granted.Load() }

// Waited is how long Wait has asked its callers to sleep, summed over
// callers (concurrent waits overlap).
func (l *Limiter) Waited() time.Duration { return time.Duration(l.waited.Load()) }
