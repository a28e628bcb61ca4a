package backupd

import (
	"context"
	"runtime"
	"sync"
	"testing"
)

// done is a context that has ended: Acquire with it takes a slot only if
// one is free at once, which makes "would this wait?" a deterministic
// question.
func done() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// TestSlotsCaps: a sequence of acquisitions (host per step, or a release
// of an earlier step) against total and per-host caps; each step either
// gets a slot at once or would wait.
func TestSlotsCaps(t *testing.T) {
	type step struct {
		host    string
		release int // >0: release step release-1 instead of acquiring
		want    bool
	}
	for _, tc := range []struct {
		name           string
		total, perHost int
		steps          []step
	}{
		{"total caps all hosts", 2, 2, []step{{host: "a", want: true}, {host: "b", want: true}, {host: "c"}, {host: "a"}}},
		{"per-host caps one host", 4, 1, []step{{host: "a", want: true}, {host: "a"}, {host: "b", want: true}, {host: "b"}, {host: "c", want: true}}},
		{"both caps", 3, 2, []step{{host: "a", want: true}, {host: "a", want: true}, {host: "a"}, {host: "b", want: true}, {host: "b"}}},
		{"release frees its host", 3, 1, []step{{host: "a", want: true}, {host: "a"}, {release: 1}, {host: "a", want: true}, {host: "a"}}},
		{"release frees total", 1, 1, []step{{host: "a", want: true}, {host: "b"}, {release: 1}, {host: "b", want: true}}},
		{"unknown host is one host", 4, 2, []step{{host: "", want: true}, {host: "", want: true}, {host: ""}, {host: "a", want: true}}},
		{"caps below 1 count as 1", 0, -1, []step{{host: "a", want: true}, {host: "b"}}},
		{"release twice gives back once", 2, 2, []step{{host: "a", want: true}, {host: "a", want: true}, {release: 1}, {release: 1}, {host: "a", want: true}, {host: "a"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSlots(tc.total, tc.perHost)
			rel := make([]func(), len(tc.steps))
			for i, st := range tc.steps {
				if st.release > 0 {
					rel[st.release-1]()
					continue
				}
				r, err := s.Acquire(done(), st.host)
				if got := err == nil; got != st.want {
					t.Fatalf("step %d (host %q): got a slot %v, want %v", i, st.host, got, st.want)
				}
				rel[i] = r
			}
			if _, waiting := s.InUse(); waiting != 0 {
				t.Errorf("%d waiters left behind by refused acquisitions", waiting)
			}
		})
	}
}

// waiter is an Acquire running in a goroutine.
type waiter struct {
	host    string
	cancel  context.CancelFunc
	release func()
	err     error
	done    chan struct{}
}

// enqueue starts an Acquire and returns once it waits in s's queue.
func enqueue(t *testing.T, s *Slots, host string) *waiter {
	t.Helper()
	_, before := s.InUse()
	ctx, cancel := context.WithCancel(context.Background())
	w := &waiter{host: host, cancel: cancel, done: make(chan struct{})}
	go func() {
		w.release, w.err = s.Acquire(ctx, host)
		close(w.done)
	}()
	for {
		if _, n := s.InUse(); n > before {
			return w
		}
		select {
		case <-w.done:
			t.Fatalf("acquire on %s did not wait (err %v)", host, w.err)
		default:
		}
		runtime.Gosched()
	}
}

func (w *waiter) granted() bool {
	select {
	case <-w.done:
		return w.err == nil
	default:
		return false
	}
}

// grantedOnly waits until one of want and others gets its slot and
// checks that it is want and only want.
func grantedOnly(t *testing.T, want *waiter, others ...*waiter) {
	t.Helper()
	for !want.granted() {
		for _, o := range others {
			if o.granted() {
				t.Fatalf("waiter on %s was let in, not the one on %s", o.host, want.host)
			}
		}
		select {
		case <-want.done:
			if want.err != nil {
				t.Fatalf("waiter on %s: %v", want.host, want.err)
			}
		default:
			runtime.Gosched()
		}
	}
	for _, o := range others {
		if o.granted() {
			t.Fatalf("waiter on %s was let in too", o.host)
		}
	}
}

// TestSlotsOrder: a freed slot goes to the earliest waiter that can run;
// a VM of a busy host lets later VMs of other hosts pass, but no later VM
// of its own host overtakes it, so no VM starves.
func TestSlotsOrder(t *testing.T) {
	s := NewSlots(2, 1)
	ctx := context.Background()
	a1, err := s.Acquire(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	b1, err := s.Acquire(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	a2 := enqueue(t, s, "a") // host a busy and total full
	c1 := enqueue(t, s, "c")
	a3 := enqueue(t, s, "a")
	c2 := enqueue(t, s, "c")
	b1() // a2's host is still busy: c1, the next that can run, gets it
	grantedOnly(t, c1, a2, a3, c2)
	a1() // host a is free: a2, not the later a3
	grantedOnly(t, a2, a3, c2)
	c1.release() // total has room; host a is busy again, so c2
	grantedOnly(t, c2, a3)
	a2.release()
	grantedOnly(t, a3)
	c2.release()
	a3.release()
	if running, waiting := s.InUse(); running != 0 || waiting != 0 {
		t.Errorf("after every release: %d running, %d waiting", running, waiting)
	}
}

// TestSlotsCancel: a waiter whose context ends holds nothing and leaves
// the queue; cancellations racing with releases never lose or double a
// slot.
func TestSlotsCancel(t *testing.T) {
	s := NewSlots(1, 1)
	hold, err := s.Acquire(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	w := enqueue(t, s, "b")
	next := enqueue(t, s, "b")
	w.cancel()
	<-w.done
	if w.err == nil {
		t.Fatal("a cancelled wait got a slot")
	}
	if running, waiting := s.InUse(); running != 1 || waiting != 1 {
		t.Fatalf("after the cancel: %d running, %d waiting; want 1, 1", running, waiting)
	}
	hold()
	grantedOnly(t, next) // the cancelled waiter held no place
	next.release()

	// Races: each round a holder releases while a waiter is cancelled.
	for range 200 {
		hold, err := s.Acquire(context.Background(), "a")
		if err != nil {
			t.Fatal(err)
		}
		w := enqueue(t, s, "a")
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); hold() }()
		go func() { defer wg.Done(); w.cancel() }()
		wg.Wait()
		<-w.done
		if w.err == nil {
			w.release()
		}
		if running, waiting := s.InUse(); running != 0 || waiting != 0 {
			t.Fatalf("after a cancel racing a release: %d running, %d waiting", running, waiting)
		}
	}
}
