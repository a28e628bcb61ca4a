package nbd

import (
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd/nbd/nbdtest"
)

// hostileHeapLimit bounds the heap of the client against a hostile
// server: a memory bound (not a timing), far above the few MiB a correct
// client needs and far below what the unbounded client reached (GBs).
const hostileHeapLimit = 512 << 20

// hostile starts a misbehaving server and returns its URI.
func hostile(t *testing.T, mode nbdtest.Mode, size uint64) (*nbdtest.Server, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "hostile.sock")
	s, err := nbdtest.Start(sock, mode, size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, UnixTarget(sock, "").String()
}

// watchHeap runs f with a context that is cancelled when the heap passes
// hostileHeapLimit or f runs for 2 minutes (a guard against hangs, not a
// timing assertion); it reports the peak heap and whether the guard fired.
func watchHeap(t *testing.T, f func(ctx context.Context) error) (err error, peak uint64, guard string) {
	t.Helper()
	runtime.GC() // what earlier tests left is not this one's
	ctx, cancel := context.WithTimeoutCause(context.Background(), 2*time.Minute, errors.New("hung"))
	defer cancel()
	var top atomic.Uint64
	var fired atomic.Value
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > top.Load() {
				top.Store(ms.HeapAlloc)
			}
			if ms.HeapAlloc > hostileHeapLimit {
				fired.Store("heap over the limit")
				cancel()
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	err = f(ctx)
	close(stop)
	<-done
	if ctx.Err() != nil && fired.Load() == nil {
		fired.Store(context.Cause(ctx).Error())
	}
	g, _ := fired.Load().(string)
	return err, top.Load(), g
}

// TestHostileServers: each way of speaking the protocol wrongly ends in
// an error (or, for a legal but extreme reply, a correct answer) without
// hanging and with bounded memory.
func TestHostileServers(t *testing.T) {
	t.Run("endless error chunks", func(t *testing.T) {
		_, uri := hostile(t, nbdtest.EndlessErrorChunks, 1<<20)
		c := dialT(t, uri, testOptions())
		err, peak, guard := watchHeap(t, func(ctx context.Context) error {
			_, err := c.ReadAt(ctx, make([]byte, 4096), 0)
			return err
		})
		if guard != "" || !errors.Is(err, ErrProtocol) {
			t.Fatalf("read: %v (guard: %q, peak heap %d MiB), want a protocol error", err, guard, peak>>20)
		}
	})
	t.Run("endless unknown context", func(t *testing.T) {
		_, uri := hostile(t, nbdtest.EndlessUnknownContext, 1<<20)
		c := dialT(t, uri, testOptions())
		err, peak, guard := watchHeap(t, func(ctx context.Context) error {
			_, err := c.AllocatedExtents(ctx)
			return err
		})
		if guard != "" || !errors.Is(err, ErrProtocol) {
			t.Fatalf("block status: %v (guard: %q, peak heap %d MiB), want a protocol error", err, guard, peak>>20)
		}
	})
	t.Run("1-byte extents", func(t *testing.T) {
		const size = 64 << 20
		_, uri := hostile(t, nbdtest.TinyExtents, size)
		c := dialT(t, uri, testOptions())
		var ext []Extent
		err, peak, guard := watchHeap(t, func(ctx context.Context) (err error) {
			ext, err = c.AllocatedExtents(ctx)
			return err
		})
		t.Logf("peak heap %d MiB, %d areas", peak>>20, len(ext))
		if err != nil || guard != "" {
			t.Fatalf("allocated extents: %v (guard %q, peak heap %d MiB)", err, guard, peak>>20)
		}
		if len(ext) > MaxExtents {
			t.Errorf("%d areas, more than %d", len(ext), MaxExtents)
		}
		// Every data byte (even offsets) lies in an area: widened, not lost.
		var covered int64
		for i, e := range ext {
			if i > 0 && e.Offset < ext[i-1].End() || e.End() > size {
				t.Fatalf("areas out of order or past the end: %v after %v", e, ext[i-1])
			}
			covered += e.Length
		}
		if covered != size || ext[0].Offset != 0 {
			t.Errorf("areas cover %d bytes from %d, want the whole %d-byte export", covered, ext[0].Offset, size)
		}
		if _, err := c.BlockStatus(context.Background(), 0, size, ContextBaseAllocation); !errors.Is(err, ErrProtocol) {
			t.Errorf("BlockStatus of 64M extents: %v, want a protocol error naming the cap", err)
		}
	})
	t.Run("silent handshake", func(t *testing.T) {
		s, uri := hostile(t, nbdtest.SilentHandshake, 1<<20)
		o := testOptions()
		o.DialTimeout = 300 * time.Millisecond
		o.Retries = 5
		err, _, guard := watchHeap(t, func(ctx context.Context) error {
			c, err := Dial(ctx, uri, o)
			if err == nil {
				c.Close()
			}
			return err
		})
		if guard != "" || !errors.Is(err, ErrStalled) {
			t.Fatalf("dial: %v (guard %q), want ErrStalled", err, guard)
		}
		// All attempts share one DialTimeout: the first takes all of it.
		if n := s.Connections(); n != 1 {
			t.Errorf("%d handshakes attempted within one dial timeout, want 1", n)
		}
	})
	t.Run("stall mid reply", func(t *testing.T) {
		_, uri := hostile(t, nbdtest.StallMidReply, 1<<20)
		o := testOptions()
		o.StallTimeout = 300 * time.Millisecond
		o.Retries = 5
		c := dialT(t, uri, o)
		err, _, guard := watchHeap(t, func(ctx context.Context) error {
			_, err := c.ReadAt(ctx, make([]byte, 64<<10), 0)
			return err
		})
		if guard != "" || !errors.Is(err, ErrStalled) {
			t.Fatalf("read: %v (guard %q), want ErrStalled", err, guard)
		}
		if st := c.Stats(); st.Stalls != 1 {
			t.Errorf("stats %+v: want one stall: retries share half a stall timeout", st)
		}
	})
}
