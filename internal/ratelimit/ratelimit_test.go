package ratelimit

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock records the sleeps asked for; with advance it moves its time
// on by each sleep (one sleeper at a time), without it time stands still.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	advance bool
	sleeps  []time.Duration
	fail    error // Sleep returns it (a cancelled context)
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
	if c.fail != nil {
		return c.fail
	}
	if c.advance {
		c.now = c.now.Add(d)
	}
	return nil
}

func (c *fakeClock) total() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var t time.Duration
	for _, d := range c.sleeps {
		t += d
	}
	return t
}

// monday10 is a Monday, 10:00 local time.
var monday10 = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

func near(a, b time.Duration) bool { return (a - b).Abs() <= time.Microsecond }

// TestWaitAsksForTheRate: 2 MiB in 64 KiB steps at 1 MiB/s asks for two
// seconds of sleep less the burst the bucket holds.
func TestWaitAsksForTheRate(t *testing.T) {
	c := &fakeClock{now: monday10, advance: true}
	l := NewWithClock(Schedule{Rate: 1 << 20}, c)
	for range 32 {
		if err := l.Wait(context.Background(), 64<<10, nil); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := c.total(), 2*time.Second-burstTime; !near(got, want) {
		t.Fatalf("slept %v for 2 MiB at 1 MiB/s, want %v", got, want)
	}
	if l.Granted() != 2<<20 {
		t.Fatalf("granted %d bytes, want %d", l.Granted(), 2<<20)
	}
	// Idle for a while: the bucket refills to its burst only, not more.
	c.now = c.now.Add(time.Hour)
	c.sleeps = nil
	if err := l.Wait(context.Background(), 1<<20, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := c.total(), time.Second-burstTime; !near(got, want) {
		t.Fatalf("after an idle hour 1 MiB slept %v, want %v (the bucket holds %v)", got, want, burstTime)
	}
}

// TestWaitIsShared: callers take from one bucket; each waits its turn
// behind the bytes granted before it.
func TestWaitIsShared(t *testing.T) {
	c := &fakeClock{now: monday10}
	l := NewWithClock(Schedule{Rate: 1 << 20}, c)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := l.Wait(context.Background(), 1<<20, nil); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	var got []time.Duration
	got = append(got, c.sleeps...)
	want := map[time.Duration]bool{}
	for i := 1; i <= 4; i++ {
		want[time.Duration(i)*time.Second-burstTime] = true
	}
	for _, d := range got {
		if !want[d] {
			t.Fatalf("sleeps %v: want one each of 0.9s, 1.9s, 2.9s, 3.9s", got)
		}
		delete(want, d)
	}
	if len(want) != 0 {
		t.Fatalf("sleeps %v: missing %v", got, want)
	}
}

// TestWaitCancelled: a cancelled wait returns the context's error and
// gives its tokens back; before is told the wait first.
func TestWaitCancelled(t *testing.T) {
	c := &fakeClock{now: monday10}
	l := NewWithClock(Schedule{Rate: 1 << 20}, c)
	if err := l.Wait(context.Background(), 1<<20, nil); err != nil {
		t.Fatal(err)
	}
	c.fail = context.Canceled
	var told time.Duration
	err := l.Wait(context.Background(), 1<<20, func(d time.Duration) { told = d })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
	if want := 2*time.Second - burstTime; !near(told, want) {
		t.Fatalf("before was told %v, want %v", told, want)
	}
	c.fail = nil
	c.sleeps = nil
	if err := l.Wait(context.Background(), 1<<20, nil); err != nil {
		t.Fatal(err)
	}
	if want := 2*time.Second - burstTime; len(c.sleeps) != 1 || !near(c.sleeps[0], want) {
		t.Fatalf("after a cancelled wait the next slept %v, want %v (the cancelled tokens given back)", c.sleeps, want)
	}
	if l.Granted() != 2<<20 {
		t.Fatalf("granted %d, want %d", l.Granted(), 2<<20)
	}
}

// TestRealClockCancel: the real clock's sleep ends when the context does.
func TestRealClockCancel(t *testing.T) {
	l := New(Schedule{Rate: MinRate})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Wait(ctx, 1<<20, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait of 1 MiB at 1 KiB/s with a cancelled context: %v", err)
	}
}

// TestScheduleWindows: the rate applies inside the windows only.
func TestScheduleWindows(t *testing.T) {
	ws, err := ParseWindows("Mon-Fri 08:00-18:00, Sat 22:00-02:00")
	if err != nil {
		t.Fatal(err)
	}
	s := Schedule{Rate: 10 << 20, Windows: ws}
	day := func(d, h, m int) time.Time { return time.Date(2026, 12, 6+d, h, m, 0, 0, time.UTC) } // 6 Dec 2026 is a Sunday
	for _, tc := range []struct {
		t    time.Time
		want Rate
	}{
		{day(1, 10, 0), 10 << 20},
		{day(1, 7, 59), Unlimited},
		{day(1, 8, 0), 10 << 20},
		{day(5, 17, 59), 10 << 20},
		{day(5, 18, 0), Unlimited},
		{day(6, 12, 0), Unlimited},
		{day(6, 23, 0), 10 << 20},
		{day(7, 1, 59), 10 << 20},
		{day(7, 2, 0), Unlimited},
		{day(2, 1, 0), Unlimited}, // Tuesday 01:00: only Saturday's window crosses midnight
	} {
		if got := s.At(tc.t); got != tc.want {
			t.Errorf("%s: rate %v, want %v", tc.t.Format("Mon 15:04"), got, tc.want)
		}
	}
	if got, want := s.String(), "10MiB/s during Mon-Fri 08:00-18:00, Sat 22:00-02:00 (unlimited otherwise)"; got != want {
		t.Errorf("String %q, want %q", got, want)
	}
	// A limiter outside the window lets bytes through without waiting.
	c := &fakeClock{now: day(6, 12, 0)}
	l := NewWithClock(s, c)
	if err := l.Wait(context.Background(), 64<<20, nil); err != nil || len(c.sleeps) != 0 {
		t.Fatalf("outside the window: err %v, sleeps %v", err, c.sleeps)
	}
	c.now = day(6, 23, 0)
	if err := l.Wait(context.Background(), 10<<20, nil); err != nil || len(c.sleeps) != 1 || !near(c.sleeps[0], time.Second-burstTime) {
		t.Fatalf("inside the window: err %v, sleeps %v, want one of %v", err, c.sleeps, time.Second-burstTime)
	}
}

func TestParseWindows(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"08:00-18:00", "08:00-18:00"},
		{"mon-fri 8:00-18:00", "Mon-Fri 08:00-18:00"},
		{"Monday-Friday 08:30-24:00", "Mon-Fri 08:30-24:00"},
		{"Fri-Mon 22:00-06:00", "Mon/Fri-Sun 22:00-06:00"},
		{"Mon-Wed/Fri 09:00-17:00", "Mon-Wed/Fri 09:00-17:00"},
	} {
		ws, err := ParseWindows(tc.in)
		if err != nil || len(ws) != 1 || ws[0].String() != tc.want {
			t.Errorf("ParseWindows(%q) = %v, %v; want %s", tc.in, ws, err, tc.want)
			continue
		}
		back, err := ParseWindows(ws[0].String())
		if err != nil || back[0] != ws[0] {
			t.Errorf("%q does not read back: %v %v", ws[0].String(), back, err)
		}
	}
	for _, bad := range []string{"", "8-18", "Mon 08:00", "Funday 08:00-18:00", "08:00-18:60", "25:00-26:00", "08:00-08:00", "Mon Tue 08:00-09:00", "08:00-18:00,"} {
		if _, err := ParseWindows(bad); !errors.Is(err, ErrBadWindow) || !strings.Contains(err.Error(), "e.g.") && !strings.Contains(err.Error(), "00:00-24:00") {
			t.Errorf("ParseWindows(%q): %v, want an ErrBadWindow with an example", bad, err)
		}
	}
}

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Rate
	}{
		{"50M", 50 << 20},
		{"50MiB", 50 << 20},
		{"50M/s", 50 << 20},
		{"1.5G", 3 << 29},
		{"800k", 800 << 10},
		{"800K", 800 << 10},
		{"4096", 4096},
		{"100Mbit", 12_500_000},
		{"1Gbit/s", 125_000_000},
		{"unlimited", Unlimited},
		{" none ", Unlimited},
	} {
		got, err := ParseRate(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"0", "0M", "-5M", "garbage", "", "50MB", "10x", "100", "1e400", "NaN", "M"} {
		if r, err := ParseRate(bad); !errors.Is(err, ErrBadRate) || !strings.Contains(err.Error(), "50M") {
			t.Errorf("ParseRate(%q) = %d, %v; want an ErrBadRate naming an example", bad, r, err)
		}
	}
	for r, want := range map[Rate]string{50 << 20: "50MiB/s", 3 << 29: "1.5GiB/s", 12_500_000: "11.92MiB/s", 2000: "1.95KiB/s", Unlimited: "unlimited"} {
		if r.String() != want {
			t.Errorf("Rate(%d).String() = %q, want %q", r, r.String(), want)
		}
	}
}

// TestReader: a body read through Reader arrives whole, in chunks no
// larger than the rate's, every byte granted by the limiter.
func TestReader(t *testing.T) {
	data := make([]byte, 1<<20+123)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rnd.Uint32())
	}
	c := &fakeClock{now: monday10, advance: true}
	l := NewWithClock(Schedule{Rate: 256 << 10}, c)
	var told time.Duration
	r := &Reader{R: bytes.NewReader(data), L: l, Ctx: context.Background(), Before: func(d time.Duration) { told += d }}
	var out bytes.Buffer
	buf := make([]byte, 1<<20)
	for {
		n, err := r.Read(buf)
		if n > Chunk(256<<10) {
			t.Fatalf("one Read returned %d bytes, more than a chunk (%d)", n, Chunk(256<<10))
		}
		out.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(out.Bytes(), data) {
		t.Fatal("bytes read through the limiter differ")
	}
	if l.Granted() != int64(len(data)) {
		t.Fatalf("granted %d, want %d", l.Granted(), len(data))
	}
	want := time.Duration(float64(len(data))/float64(256<<10)*float64(time.Second)) - burstTime
	if got := c.total(); (got-want).Abs() > time.Millisecond || told != got {
		t.Fatalf("slept %v (told %v), want %v", got, told, want)
	}
}
