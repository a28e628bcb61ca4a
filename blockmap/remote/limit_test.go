package remote

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/ratelimit"
	"github.com/cairnbackup/cairn/internal/s3test"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestLimitedReplicatePull replicates and pulls back through a limit of
// 1 MiB/s on a real store: every byte of every object written goes
// through the limiter, the pull's downloads too, the pulled point equals
// the local one byte for byte, and no request times out although the
// packs uploaded at once share the limit far below the stall rate the
// store's timeouts assume (64 MiB/s): the limiter's waits do not count.
func TestLimitedReplicatePull(t *testing.T) { s3test.Each(t, testLimitedReplicatePull) }

func testLimitedReplicatePull(t *testing.T, eng s3test.Engine) {
	e := newEnvOn(t, eng, 0)
	repo := testutil.NewRepo(t)
	rnd := rand.New(rand.NewPCG(71, 72))
	p := writePoint(t, repo, "limited", time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC),
		[]diskSpec{{name: "disk-0", size: 8 << 20, data: map[int64][]byte{0: randBytes(rnd, 2<<20), 6 << 20: textBytes(1 << 20)}}})
	config := e.objects("")[configName] // written by Init, unlimited
	o := e.opts
	o.Store.Timeout = time.Second
	o.Store.MinRate = 64 << 20
	up := ratelimit.New(ratelimit.Schedule{Rate: 1 << 20})
	o.Store.Limiter = up
	r, err := Open(ctx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	st, err := r.Replicate(ctx(t), repo, pointsOf(p), ReplicateOptions{CacheDir: cacheDir(t)})
	if err != nil {
		t.Fatalf("replication at 1 MiB/s: %v", err)
	}
	stored := e.storedBytes() - config
	t.Logf("%d packs, %d bytes stored; the limiter granted %d bytes and asked for %v of waits", st.Packs, stored, up.Granted(), up.Waited())
	if st.Packs < 2 {
		t.Fatalf("%d packs: want several uploaded at once", st.Packs)
	}
	if up.Granted() < stored {
		t.Fatalf("the limiter granted %d bytes, less than the %d written: some went around it", up.Granted(), stored)
	}
	if up.Waited() <= 0 {
		t.Fatal("the limiter never asked for a wait at 1 MiB/s")
	}

	down := ratelimit.New(ratelimit.Schedule{Rate: 1 << 20})
	o.Store.Limiter = nil
	r2, err := Open(ctx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	r2.SetLimiter(down)
	fresh := newRepoAt(t, filepath.Join(t.TempDir(), "fresh"))
	np, _, err := r2.Pull(ctx(t), fresh, p.VM, p.ID)
	if err != nil {
		t.Fatalf("pull at 1 MiB/s: %v", err)
	}
	sameLocal(t, repo, fresh, p, np)
	t.Logf("pull: the limiter granted %d bytes (%d in packs)", down.Granted(), st.PackBytes)
	if down.Granted() < st.PackBytes {
		t.Fatalf("the pull's limiter granted %d bytes, less than the %d of blobs it must have read", down.Granted(), st.PackBytes)
	}
}

func pointsOf(p ...blockmap.Point) []blockmap.Point { return p }

// fakeClock records the waits a limiter asks for and moves its time on
// by them instead of sleeping.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps time.Duration
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *fakeClock) Sleep(_ context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps += d
	c.now = c.now.Add(d)
	return nil
}

// TestLimitTransport: request and response bodies stream through the
// limiter in chunks; without a limiter nothing is wrapped.
func TestLimitTransport(t *testing.T) {
	payload := randBytes(rand.New(rand.NewPCG(3, 4)), 1<<20)
	var got []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			got, _ = io.ReadAll(r.Body)
			return
		}
		w.Write(payload)
	}))
	defer srv.Close()
	c := &fakeClock{now: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)}
	lim := ratelimit.NewWithClock(ratelimit.Schedule{Rate: 1 << 20}, c)
	lt := &limitTransport{base: http.DefaultTransport}
	hc := &http.Client{Transport: lt}

	do := func(method string, body []byte) []byte {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	do(http.MethodPut, payload)
	if lim.Granted() != 0 {
		t.Fatal("granted bytes without a limiter")
	}
	lt.lim.Store(lim)
	do(http.MethodPut, payload)
	if !bytes.Equal(got, payload) {
		t.Fatal("the limited PUT's body arrived changed")
	}
	if lim.Granted() != 1<<20 {
		t.Fatalf("PUT of 1 MiB: granted %d", lim.Granted())
	}
	if b := do(http.MethodGet, nil); !bytes.Equal(b, payload) {
		t.Fatal("the limited GET's body arrived changed")
	}
	if lim.Granted() != 2<<20 {
		t.Fatalf("PUT and GET of 1 MiB: granted %d", lim.Granted())
	}
	// 2 MiB at 1 MiB/s ask for 2 s of waits less the bucket's burst
	// (0.1 s), in waits spread over the chunks.
	if want := 2*time.Second - 100*time.Millisecond; (c.sleeps - want).Abs() > time.Millisecond {
		t.Fatalf("asked for %v of waits, want %v", c.sleeps, want)
	}
}

// TestStretchTimeout: extensions keep the context alive past its first
// deadline; it then ends with context.DeadlineExceeded, and its cancel
// with context.Canceled.
func TestStretchTimeout(t *testing.T) {
	c, cancel := stretchTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	extend := stretchOf(c)
	if extend == nil {
		t.Fatal("no stretch found in the context")
	}
	extend(time.Hour)
	select {
	case <-c.Done():
		t.Fatal("the context ended although extended by an hour")
	case <-time.After(200 * time.Millisecond):
	}
	c2, cancel2 := stretchTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	stretchOf(c2)(30 * time.Millisecond)
	child, cc := context.WithCancel(c2)
	defer cc()
	<-child.Done()
	if !errors.Is(c2.Err(), context.DeadlineExceeded) || !errors.Is(context.Cause(child), context.DeadlineExceeded) {
		t.Fatalf("after its deadline: %v, child's cause %v", c2.Err(), context.Cause(child))
	}
	c3, cancel3 := stretchTimeout(context.Background(), time.Hour)
	cancel3()
	if !errors.Is(c3.Err(), context.Canceled) {
		t.Fatalf("cancelled: %v", c3.Err())
	}
	if strings.Contains(c3.Err().Error(), "deadline") {
		t.Fatal("a cancel reads as a deadline")
	}
}
