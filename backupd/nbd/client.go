package nbd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Client reads one export over one or more pipelined connections. It is
// safe for concurrent use.
type Client struct {
	target Target
	opts   Options
	tls    *tls.Config
	info   ExportInfo
	log    *slog.Logger
	maxReq uint32 // largest read request, a multiple of the minimum block size

	slots  []*slot
	sem    chan struct{}
	closed atomic.Bool
	done   chan struct{}
	stats  counters
}

// slot holds one connection of the pool and redials it when it broke.
type slot struct {
	mu       sync.Mutex // guards c and failedAt
	c        *conn
	failedAt time.Time
	dialMu   sync.Mutex // one redial at a time
}

func (s *slot) get() *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c
}

// Dial connects to the export named by an NBD URI (see ParseURI).
func Dial(ctx context.Context, uri string, opts Options) (*Client, error) {
	t, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	return DialTarget(ctx, t, opts)
}

// DialUnix connects to export on the server listening on socketPath.
func DialUnix(ctx context.Context, socketPath, export string, opts Options) (*Client, error) {
	return DialTarget(ctx, UnixTarget(socketPath, export), opts)
}

// DialTarget connects to t, retrying transient failures, and opens the
// extra connections when the server allows several.
func DialTarget(ctx context.Context, t Target, opts Options) (*Client, error) {
	o := opts.withDefaults()
	tcfg, err := tlsConfig(t, o.TLS)
	if err != nil {
		return nil, err
	}
	c := &Client{target: t, opts: o, tls: tcfg, log: o.Logger.With("nbd", t.String()), done: make(chan struct{})}
	first, err := c.dialFirst(ctx)
	if err != nil {
		return nil, err
	}
	c.info = first.info
	n := 1
	if c.info.Flags&FlagCanMultiConn != 0 {
		n = o.Connections
	}
	c.slots = make([]*slot, n)
	c.slots[0] = &slot{c: first}
	for i := 1; i < n; i++ {
		s := &slot{}
		if cn, err := c.dial(ctx); err != nil {
			c.log.Warn("nbd extra connection failed, will retry on demand", "err", err)
			s.failedAt = time.Now()
		} else {
			s.c = cn
		}
		c.slots[i] = s
	}
	c.sem = make(chan struct{}, n*o.MaxInFlight)
	c.maxReq = requestSize(o.MaxRequestSize, c.info.BlockSize)
	c.log.Debug("nbd connected", "size", c.info.Size, "flags", c.info.Flags, "connections", n,
		"structured", c.info.StructuredReplies, "contexts", c.info.MetaContexts)
	return c, nil
}

// requestSize is the largest read request: at most want and the server's
// maximum, rounded down to the minimum block size.
func requestSize(want uint32, bs BlockSize) uint32 {
	m := min(want, bs.Max)
	m -= m % bs.Min
	return max(m, bs.Min)
}

// dialFirst dials the first connection with retries. All attempts share
// one deadline, Options.DialTimeout: a server that accepts and then stays
// silent fails after that long, not after every retry's timeout.
func (c *Client) dialFirst(ctx context.Context) (*conn, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, c.opts.DialTimeout,
		fmt.Errorf("%w: no NBD handshake with %s within %v", ErrStalled, c.target, c.opts.DialTimeout))
	defer cancel()
	var last error
	for attempt := 0; attempt <= c.opts.Retries; attempt++ {
		if attempt > 0 {
			if err := c.sleep(ctx, attempt); err != nil {
				if cause := context.Cause(ctx); errors.Is(cause, ErrStalled) {
					return nil, fmt.Errorf("%w (last attempt: %v)", cause, last)
				}
				return nil, err
			}
		}
		cn, err := c.dial(ctx)
		if err == nil {
			return cn, nil
		}
		last = err
		if ctx.Err() != nil {
			if cause := context.Cause(ctx); errors.Is(cause, ErrStalled) {
				return nil, fmt.Errorf("%w (last attempt: %v)", cause, err)
			}
			return nil, err
		}
		if !retryable(err) {
			return nil, err
		}
		c.log.Debug("nbd dial failed, retrying", "attempt", attempt+1, "err", err)
	}
	return nil, fmt.Errorf("after %d attempts: %w", c.opts.Retries+1, last)
}

// dial opens and starts one connection. Reconnections must find the export
// as it was.
func (c *Client) dial(ctx context.Context) (*conn, error) {
	nc, stream, info, err := dialConn(ctx, c.target, c.opts, c.tls, false)
	if err != nil {
		return nil, err
	}
	if c.info.Handshake != "" && info.Size != c.info.Size {
		_ = nc.Close()
		return nil, fmt.Errorf("reconnect to %s: export size changed from %d to %d", c.target, c.info.Size, info.Size)
	}
	cn := newConn(nc, stream, info, c.opts.StallTimeout, c.log)
	cn.start()
	return cn, nil
}

// permanent reports errors that no retry can fix: option refusals, TLS
// certificate problems and a closed client.
func permanent(err error) bool {
	var oe *OptionError
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	return errors.As(err, &oe) || errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) ||
		errors.Is(err, ErrClosed)
}

// retryable reports whether another attempt of a request may succeed:
// after a broken connection, a transient server error (EIO, ENOMEM,
// ESHUTDOWN) or a failed reconnection, but not after a refusal, a protocol
// violation or a missing metadata context.
func retryable(err error) bool {
	var se *ServerError
	switch {
	case errors.Is(err, ErrProtocol):
		return false // a server that broke the protocol once will again
	case isConnError(err):
		return true
	case errors.As(err, &se):
		return se.transient()
	case permanent(err), errors.Is(err, ErrProtocol), errors.Is(err, ErrContextNotNegotiated):
		return false
	}
	return true
}

// sleep waits the backoff before attempt (1-based) or until ctx is done.
func (c *Client) sleep(ctx context.Context, attempt int) error {
	d := c.opts.RetryBackoff << min(attempt-1, 20)
	d = min(d, c.opts.MaxRetryBackoff)
	d = d/2 + rand.N(d/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return ErrClosed
	}
}

// pick returns the least loaded live connection, redialing a broken slot
// when that helps.
func (c *Client) pick(ctx context.Context) (*conn, error) {
	var best *conn
	var bestLoad int64
	var broken *slot
	for _, s := range c.slots {
		cn := s.get()
		if cn != nil && cn.alive() {
			if l := cn.inflight.Load(); best == nil || l < bestLoad {
				best, bestLoad = cn, l
			}
		} else if broken == nil {
			broken = s
		}
	}
	if broken == nil || (best != nil && bestLoad == 0) {
		return best, nil
	}
	cn, err := c.redial(ctx, broken, best != nil)
	switch {
	case err == nil:
		return cn, nil
	case best != nil:
		return best, nil
	default:
		return nil, err
	}
}

// redial replaces the broken connection of s. With others alive it skips
// slots that failed to dial recently.
func (c *Client) redial(ctx context.Context, s *slot, othersAlive bool) (*conn, error) {
	s.dialMu.Lock()
	defer s.dialMu.Unlock()
	s.mu.Lock()
	cn, failedAt := s.c, s.failedAt
	s.mu.Unlock()
	if cn != nil && cn.alive() {
		return cn, nil
	}
	if othersAlive && time.Since(failedAt) < c.opts.RetryBackoff {
		return nil, errors.New("nbd redial backing off")
	}
	if c.closed.Load() {
		return nil, ErrClosed
	}
	c.log.Info("nbd reconnecting")
	cn, err := c.dial(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.failedAt = time.Now()
		return nil, err
	}
	if c.closed.Load() {
		go cn.disconnect(time.Second)
		return nil, ErrClosed
	}
	s.c = cn
	c.stats.reconnects.Add(1)
	return cn, nil
}

// do runs one request built by mk for the chosen connection, retrying transient failures with
// exponential backoff on a live (possibly new) connection.
//
// Retries after a stall share one budget: once a request stalled, all
// further attempts must end within half a stall timeout more, so that a
// server that stalls for good fails the request after about 1.5 stall
// timeouts, not after one per retry.
func (c *Client) do(ctx context.Context, mk func(*conn) (*request, error)) (*request, error) {
	parent := ctx
	var last error
	for attempt := 0; attempt <= c.opts.Retries; attempt++ {
		if attempt > 0 {
			c.stats.retries.Add(1)
			if err := c.sleep(ctx, attempt); err != nil {
				if parent.Err() == nil && ctx.Err() != nil {
					return nil, fmt.Errorf("%w (no progress after retrying for %v)", last, c.opts.StallTimeout/2)
				}
				return nil, err
			}
		}
		if c.closed.Load() {
			return nil, ErrClosed
		}
		req, err := c.try(ctx, mk)
		if err == nil {
			return req, nil
		}
		if parent.Err() != nil {
			return nil, parent.Err()
		}
		if ctx.Err() != nil { // the stall budget ran out
			return nil, fmt.Errorf("%w (no progress after retrying for %v)", last, c.opts.StallTimeout/2)
		}
		last = err
		if !retryable(err) {
			return nil, err
		}
		if errors.Is(err, ErrStalled) && ctx == parent && c.opts.StallTimeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(parent, c.opts.StallTimeout/2)
			defer cancel()
		}
		c.log.Debug("nbd request failed, retrying", "attempt", attempt+1, "err", err)
	}
	return nil, fmt.Errorf("after %d attempts: %w", c.opts.Retries+1, last)
}

// try makes one attempt of a request.
func (c *Client) try(ctx context.Context, mk func(*conn) (*request, error)) (*request, error) {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.sem }()
	cn, err := c.pick(ctx)
	if err != nil {
		return nil, err
	}
	req, err := mk(cn)
	if err != nil {
		return nil, err
	}
	c.stats.requests.Add(1)
	if err := cn.do(ctx, req); err != nil {
		if errors.Is(err, ErrStalled) {
			c.stats.stalls.Add(1)
		}
		var se *ServerError
		if errors.As(err, &se) && se.Errno == ESHUTDOWN {
			cn.abort(err)
		}
		return nil, err
	}
	return req, nil
}

// Close waits briefly for outstanding requests, sends NBD_CMD_DISC on every
// connection and closes them. Requests still running fail with ErrClosed.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	close(c.done)
	var wg sync.WaitGroup
	for _, s := range c.slots {
		s.dialMu.Lock()
		cn := s.get()
		s.dialMu.Unlock()
		if cn != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cn.disconnect(5 * time.Second)
			}()
		}
	}
	wg.Wait()
	return nil
}

// Info describes the export as negotiated on the first connection.
func (c *Client) Info() ExportInfo {
	info := c.info
	info.MetaContexts = make(map[string]uint32, len(c.info.MetaContexts))
	for k, v := range c.info.MetaContexts {
		info.MetaContexts[k] = v
	}
	return info
}

// Size is the export size in bytes.
func (c *Client) Size() int64 { return c.info.Size }

// Flags are the export's transmission flags.
func (c *Client) Flags() uint16 { return c.info.Flags }

// ReadOnly reports NBD_FLAG_READ_ONLY.
func (c *Client) ReadOnly() bool { return c.info.Flags&FlagReadOnly != 0 }

// CanMultiConn reports NBD_FLAG_CAN_MULTI_CONN.
func (c *Client) CanMultiConn() bool { return c.info.Flags&FlagCanMultiConn != 0 }

// BlockSize is the server's block size constraints.
func (c *Client) BlockSize() BlockSize { return c.info.BlockSize }

// MaxRequest is the largest read request the client sends.
func (c *Client) MaxRequest() uint32 { return c.maxReq }

// StructuredReplies reports whether structured replies were negotiated.
func (c *Client) StructuredReplies() bool { return c.info.StructuredReplies }

// HasContext reports whether a metadata context was negotiated.
func (c *Client) HasContext(name string) bool {
	_, ok := c.info.MetaContexts[name]
	return ok
}

// Connections is the pool size: how many connections the client keeps.
func (c *Client) Connections() int { return len(c.slots) }

// LiveConnections counts the connections that are up right now.
func (c *Client) LiveConnections() int {
	n := 0
	for _, s := range c.slots {
		if cn := s.get(); cn != nil && cn.alive() {
			n++
		}
	}
	return n
}
