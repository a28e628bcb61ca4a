package remote

// Bandwidth limits (docs/remote.md, "Bandwidth"): every request and
// response body of a store passes through the run's limiter as it
// streams, so the packs uploaded in parallel and the ranged GETs in
// flight share one bucket, and a 32 MiB pack goes out at the rate instead
// of in one burst. Time spent waiting for the limiter does not count
// against a request's stall timeout.

import (
	"context"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnbackup/cairn/internal/ratelimit"
)

// SetLimiter makes every later transfer of the remote (uploads and
// downloads, bodies of every request) pass through l; nil lifts the
// limit. It replaces StoreOptions.Limiter, e.g. for one serve job whose
// limit differs from the remote's default.
func (r *Remote) SetLimiter(l *ratelimit.Limiter) { r.st.lt.lim.Store(l) }

// Limiter is the remote's limiter (nil: unlimited).
func (r *Remote) Limiter() *ratelimit.Limiter { return r.st.lt.lim.Load() }

// limitTransport passes the bodies of a store's requests and responses
// through its limiter, when it has one.
type limitTransport struct {
	base http.RoundTripper
	lim  atomic.Pointer[ratelimit.Limiter]
}

func (t *limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	l := t.lim.Load()
	if l == nil {
		return t.base.RoundTrip(req)
	}
	ctx := req.Context()
	before := stretchOf(ctx)
	wrap := func(rc io.ReadCloser) io.ReadCloser {
		return limitedBody{Reader: &ratelimit.Reader{R: rc, L: l, Ctx: ctx, Before: before}, Closer: rc}
	}
	if req.Body != nil && req.Body != http.NoBody {
		r := *req // RoundTrip must not change the caller's request
		r.Body = wrap(req.Body)
		if get := req.GetBody; get != nil {
			r.GetBody = func() (io.ReadCloser, error) {
				b, err := get()
				if err != nil || b == http.NoBody {
					return b, err
				}
				return wrap(b), nil
			}
		}
		req = &r
	}
	resp, err := t.base.RoundTrip(req)
	if err == nil && resp.Body != nil && resp.Body != http.NoBody {
		resp.Body = wrap(resp.Body)
	}
	return resp, err
}

type limitedBody struct {
	io.Reader
	io.Closer
}

// limitedContext is opContext's bound d for a store with a limiter: it
// moves on by every wait the limiter asks of the request's bodies.
func (s *store) limitedContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc, bool) {
	if s.lt == nil || s.lt.lim.Load() == nil {
		return nil, nil, false
	}
	c, cancel := stretchTimeout(ctx, d)
	return c, cancel, true
}

// stretchCtx is a context with a timeout that waits for the limiter
// extend: it ends with context.DeadlineExceeded d after it was made plus
// every extension.
type stretchCtx struct {
	context.Context // a WithCancelCause of the parent
	cancel          context.CancelCauseFunc
	mu              sync.Mutex
	deadline        time.Time
	timer           *time.Timer
	fired           bool
}

type stretchKey struct{}

func stretchTimeout(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	inner, cancel := context.WithCancelCause(parent)
	s := &stretchCtx{Context: inner, cancel: cancel, deadline: time.Now().Add(d)}
	s.timer = time.AfterFunc(d, s.fire)
	return s, func() {
		s.timer.Stop()
		cancel(context.Canceled)
	}
}

// fire ends the context, unless extensions moved its deadline on.
func (s *stretchCtx) fire() {
	s.mu.Lock()
	if s.Context.Err() != nil { // cancelled first: it stays cancelled
		s.mu.Unlock()
		return
	}
	if left := time.Until(s.deadline); left > 0 {
		s.timer.Reset(left)
		s.mu.Unlock()
		return
	}
	s.fired = true
	s.mu.Unlock()
	s.cancel(context.DeadlineExceeded)
}

func (s *stretchCtx) extend(d time.Duration) {
	s.mu.Lock()
	s.deadline = s.deadline.Add(d)
	s.mu.Unlock()
}

// Err is context.DeadlineExceeded once the timeout ended the context.
func (s *stretchCtx) Err() error {
	err := s.Context.Err()
	if err != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.fired {
			return context.DeadlineExceeded
		}
	}
	return err
}

func (s *stretchCtx) Value(key any) any {
	if key == (stretchKey{}) {
		return s
	}
	return s.Context.Value(key)
}

// stretchOf is the extend of ctx's innermost stretchCtx (nil: none).
func stretchOf(ctx context.Context) func(time.Duration) {
	if s, ok := ctx.Value(stretchKey{}).(*stretchCtx); ok {
		return s.extend
	}
	return nil
}
