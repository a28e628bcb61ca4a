package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// scratchSize is how much of a data chunk the reader takes in at once.
const scratchSize = 256 << 10

// conn is one NBD connection in the transmission phase. Requests are
// pipelined: any goroutine may submit, and one reader goroutine demuxes the
// replies by cookie.
type conn struct {
	nc   net.Conn // the socket, closed to abort
	r    *bufio.Reader
	w    io.Writer // the (possibly TLS) stream
	wmu  sync.Mutex
	info ExportInfo
	log  *slog.Logger

	stall        time.Duration
	lastProgress atomic.Int64 // unix nanoseconds of the last byte received
	inflight     atomic.Int64 // submitted and not yet returned to the caller
	submitted    atomic.Int64 // requests sent on this connection

	mu         sync.Mutex
	pending    map[uint64]*request
	nextCookie uint64
	closed     bool
	err        error
	dead       chan struct{} // closed when the reader goroutine has stopped

	scratch []byte
}

// progressReader records the time of every successful read.
type progressReader struct {
	r io.Reader
	t *atomic.Int64
}

func (p progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.t.Store(time.Now().UnixNano())
	}
	return n, err
}

// newConn wraps a negotiated stream. start must be called to run it.
func newConn(nc net.Conn, stream io.ReadWriter, info ExportInfo, stall time.Duration, log *slog.Logger) *conn {
	c := &conn{
		nc: nc, w: stream, info: info, log: log, stall: stall,
		pending: map[uint64]*request{},
		dead:    make(chan struct{}),
		scratch: make([]byte, scratchSize),
	}
	c.r = bufio.NewReaderSize(progressReader{stream, &c.lastProgress}, 64<<10)
	return c
}

// start runs the reader and, with a stall timeout, the watchdog.
func (c *conn) start() {
	go c.readLoop()
	if c.stall > 0 {
		go c.watchdog()
	}
}

// alive reports whether the connection can take requests.
func (c *conn) alive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.closed && c.err == nil
}

// abort breaks the connection with err. The reader goroutine fails every
// pending request.
func (c *conn) abort(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	_ = c.nc.Close()
}

func (c *conn) readLoop() {
	for {
		if err := c.readReply(); err != nil {
			c.mu.Lock()
			if c.err == nil {
				c.err = err
			}
			cause := c.err
			reqs := c.pending
			c.pending = nil
			c.closed = true
			c.mu.Unlock()
			_ = c.nc.Close()
			close(c.dead)
			for _, r := range reqs {
				r.connErr = cause
				close(r.done)
			}
			switch {
			case errors.Is(cause, ErrProtocol):
				c.log.Warn("nbd server broke the protocol, dropping the connection", "requests", len(reqs), "err", cause)
			case len(reqs) > 0:
				c.log.Debug("nbd connection lost with requests in flight", "requests", len(reqs), "err", cause)
			}
			return
		}
	}
}

// watchdog aborts the connection when requests are outstanding and no byte
// arrived for the stall timeout.
func (c *conn) watchdog() {
	tick := max(c.stall/4, 10*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-c.dead:
			return
		case <-t.C:
		}
		c.mu.Lock()
		n := len(c.pending)
		c.mu.Unlock()
		idle := time.Since(time.Unix(0, c.lastProgress.Load()))
		if n > 0 && idle > c.stall {
			c.log.Warn("nbd server stalled, dropping connection", "requests", n, "idle", idle)
			c.abort(fmt.Errorf("%w: no reply for %v with %d requests in flight", ErrStalled, idle.Round(time.Millisecond), n))
			return
		}
	}
}

// submit registers req and sends it. A send failure breaks the connection,
// which then fails req like every other pending request.
func (c *conn) submit(req *request) error {
	c.mu.Lock()
	if c.closed || c.err != nil {
		err := c.err
		c.mu.Unlock()
		if err == nil {
			err = ErrClosed
		}
		return &connError{err}
	}
	c.nextCookie++
	req.cookie = c.nextCookie
	if len(c.pending) == 0 {
		c.lastProgress.Store(time.Now().UnixNano())
	}
	c.pending[req.cookie] = req
	c.mu.Unlock()
	c.submitted.Add(1)

	var h [requestHeaderLen]byte
	putRequest(h[:], req.flags, req.cmd, req.cookie, req.off, req.length)
	c.wmu.Lock()
	_, err := c.w.Write(h[:])
	if err == nil && len(req.payload) > 0 {
		_, err = c.w.Write(req.payload) // NBD_CMD_WRITE data follows its header
	}
	c.wmu.Unlock()
	if err != nil {
		c.abort(fmt.Errorf("send request: %w", err))
	}
	return nil
}

// putRequest encodes a request header into b.
func putRequest(b []byte, flags, cmd uint16, cookie, off uint64, length uint32) {
	binary.BigEndian.PutUint32(b[0:4], magicRequest)
	binary.BigEndian.PutUint16(b[4:6], flags)
	binary.BigEndian.PutUint16(b[6:8], cmd)
	binary.BigEndian.PutUint64(b[8:16], cookie)
	binary.BigEndian.PutUint64(b[16:24], off)
	binary.BigEndian.PutUint32(b[24:28], length)
}

// do submits req and waits for its reply.
func (c *conn) do(ctx context.Context, req *request) error {
	c.inflight.Add(1)
	defer c.inflight.Add(-1)
	if err := c.submit(req); err != nil {
		return err
	}
	select {
	case <-req.done:
	case <-ctx.Done():
		if !req.tryAbandon() {
			// The reader is reading the reply into the caller's buffer,
			// which the caller may reuse once we return: wait for it, and
			// if the payload does not arrive promptly, break the
			// connection so that the read ends.
			t := time.AfterFunc(abandonWait, func() {
				c.abort(fmt.Errorf("request abandoned while its reply was arriving: %w", ctx.Err()))
			})
			req.abandon()
			t.Stop()
		}
		return ctx.Err()
	}
	if req.connErr != nil {
		return &connError{req.connErr}
	}
	return req.err
}

// lookup finds the pending request of a cookie.
func (c *conn) lookup(cookie uint64) (*request, error) {
	c.mu.Lock()
	r := c.pending[cookie]
	c.mu.Unlock()
	if r == nil {
		return nil, protocolErrorf("reply for unknown cookie %#x", cookie)
	}
	return r, nil
}

// complete removes req from the pending set and wakes its submitter.
func (c *conn) complete(req *request) {
	c.mu.Lock()
	delete(c.pending, req.cookie)
	c.mu.Unlock()
	close(req.done)
}

// readReply reads and dispatches one simple reply or structured chunk. An
// error means the stream can no longer be trusted.
func (c *conn) readReply() error {
	var h [structuredHeaderLen]byte
	if _, err := io.ReadFull(c.r, h[:4]); err != nil {
		return fmt.Errorf("read reply: %w", err)
	}
	switch m := binary.BigEndian.Uint32(h[0:4]); m {
	case magicSimple:
		if _, err := io.ReadFull(c.r, h[4:simpleReplyLen]); err != nil {
			return fmt.Errorf("read simple reply: %w", err)
		}
		return c.simpleReply(binary.BigEndian.Uint32(h[4:8]), binary.BigEndian.Uint64(h[8:16]))
	case magicStructure:
		if !c.info.StructuredReplies {
			return protocolErrorf("structured reply without negotiation")
		}
		if _, err := io.ReadFull(c.r, h[4:structuredHeaderLen]); err != nil {
			return fmt.Errorf("read structured reply: %w", err)
		}
		return c.structuredChunk(
			binary.BigEndian.Uint16(h[4:6]), binary.BigEndian.Uint16(h[6:8]),
			binary.BigEndian.Uint64(h[8:16]), binary.BigEndian.Uint32(h[16:20]))
	default:
		return protocolErrorf("bad reply magic %#x", m)
	}
}

func (c *conn) simpleReply(errno uint32, cookie uint64) error {
	req, err := c.lookup(cookie)
	if err != nil {
		return err
	}
	switch {
	case errno != 0:
		req.setErr(&ServerError{Errno: errno, Offset: -1})
	case req.cmd == cmdRead:
		if err := c.readData(req, req.off, uint64(req.length)); err != nil {
			return err
		}
		req.covered = uint64(req.length)
	case req.cmd == cmdWrite || req.cmd == cmdFlush || req.cmd == cmdWriteZeroes:
		// success without payload
	default:
		req.setErr(protocolErrorf("simple success reply to command %d", req.cmd))
	}
	c.complete(req)
	return nil
}

// abandonWait is how long a cancelled request waits for the part of its
// reply being read into its buffer before the connection is broken.
const abandonWait = 100 * time.Millisecond

// readData reads n bytes of payload belonging at offset off of req: into
// the request's buffer directly, in pieces of at most scratchSize so that
// a cancelled request waits for one piece at most; into scratch (to be
// dropped) when the request was abandoned.
func (c *conn) readData(req *request, off, n uint64) error {
	for n > 0 {
		k := min(n, uint64(len(c.scratch)))
		var err error
		if dst := req.claim(off, k); dst != nil {
			_, err = io.ReadFull(c.r, dst)
			req.release()
		} else {
			_, err = io.ReadFull(c.r, c.scratch[:k])
		}
		if err != nil {
			return fmt.Errorf("read data: %w", err)
		}
		off += k
		n -= k
	}
	return nil
}

// readPayload reads a small chunk payload into memory.
func (c *conn) readPayload(n uint32) ([]byte, error) {
	if n > maxStatusPayload {
		return nil, protocolErrorf("chunk payload of %d bytes is too large", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(c.r, p); err != nil {
		return nil, fmt.Errorf("read chunk payload: %w", err)
	}
	return p, nil
}

func (c *conn) structuredChunk(flags, typ uint16, cookie uint64, length uint32) error {
	req, err := c.lookup(cookie)
	if err != nil {
		return err
	}
	switch {
	case typ == replyTypeNone:
		if length != 0 || flags&replyFlagDone == 0 {
			return protocolErrorf("bad NBD_REPLY_TYPE_NONE chunk (length %d, flags %#x)", length, flags)
		}
	case typ == replyTypeOffsetData && req.cmd == cmdRead:
		if length < 9 || uint64(length-8) > uint64(req.length) {
			return protocolErrorf("data chunk of %d bytes for a %d-byte read", length, req.length)
		}
		var ob [8]byte
		if _, err := io.ReadFull(c.r, ob[:]); err != nil {
			return fmt.Errorf("read data chunk offset: %w", err)
		}
		off, n := binary.BigEndian.Uint64(ob[:]), uint64(length-8)
		if off < req.off || off-req.off > uint64(req.length)-n {
			return protocolErrorf("data chunk [%d,+%d) outside read [%d,+%d)", off, n, req.off, req.length)
		}
		// Checked before the payload is read: an overlapping chunk must
		// not overwrite bytes an earlier chunk delivered.
		if err := req.cover("data", off, n); err != nil {
			return err
		}
		if err := c.readData(req, off, n); err != nil {
			return err
		}
	case typ == replyTypeOffsetHole && req.cmd == cmdRead:
		p, err := c.readPayload(length)
		if err != nil {
			return err
		}
		off, n, err := parseOffsetHole(p)
		if err != nil {
			return err
		}
		if off < req.off || n > req.length || off-req.off > uint64(req.length-n) {
			return protocolErrorf("hole chunk [%d,+%d) outside read [%d,+%d)", off, n, req.off, req.length)
		}
		if err := req.cover("hole", off, uint64(n)); err != nil {
			return err
		}
		req.zero(off, n)
	case typ == replyTypeBlockStatus && req.cmd == cmdBlockStatus:
		p, err := c.readPayload(length)
		if err != nil {
			return err
		}
		id, ext, err := parseBlockStatus(p, req.off)
		if err != nil {
			return err
		}
		// One chunk per negotiated context at most: a server repeating
		// chunks (or naming contexts never agreed) would keep the request
		// open for ever.
		if !c.negotiatedID(id) {
			return protocolErrorf("block status chunk for context id %d, which was not negotiated", id)
		}
		for _, seen := range req.statusIDs {
			if seen == id {
				return protocolErrorf("two block status chunks for context %d", id)
			}
		}
		req.statusIDs = append(req.statusIDs, id)
		if id == req.ctxID {
			req.gotStatus = true
			req.extents = ext
		}
	case typ&replyTypeErrorBit != 0:
		if length > 6+0xffff+8 {
			return protocolErrorf("error chunk of %d bytes", length)
		}
		p, err := c.readPayload(length)
		if err != nil {
			return err
		}
		se, err := parseChunkError(typ, p)
		if err != nil {
			return err
		}
		if req.errChunks++; req.errChunks > maxErrorChunks {
			return protocolErrorf("more than %d error chunks for one request (first: %v)", maxErrorChunks, req.err)
		}
		req.setErr(se)
	default:
		return protocolErrorf("unexpected chunk type %d for command %d", typ, req.cmd)
	}
	if flags&replyFlagDone == 0 {
		return nil
	}
	// Data and hole chunks never overlap (cover), so a read covered short
	// of its length left part of its buffer unwritten.
	if req.err == nil {
		switch {
		case req.cmd == cmdRead && req.covered != uint64(req.length):
			req.setErr(protocolErrorf("read [%d,+%d) answered with %d bytes", req.off, req.length, req.covered))
		case req.cmd == cmdBlockStatus && !req.gotStatus:
			req.setErr(protocolErrorf("block status reply without context %d", req.ctxID))
		}
	}
	c.complete(req)
	return nil
}

// maxErrorChunks bounds the error chunks one request may receive: a
// server may report several errors for a read, not an endless stream.
const maxErrorChunks = 64

// negotiatedID reports whether id is the id of an agreed metadata context.
func (c *conn) negotiatedID(id uint32) bool {
	for _, v := range c.info.MetaContexts {
		if v == id {
			return true
		}
	}
	return false
}

// disconnect waits (bounded) for outstanding requests, sends NBD_CMD_DISC
// and closes the socket.
func (c *conn) disconnect(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		n, closed := len(c.pending), c.closed
		c.mu.Unlock()
		if n == 0 || closed {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	if c.alive() {
		var h [requestHeaderLen]byte
		putRequest(h[:], 0, cmdDisc, 0, 0, 0)
		c.wmu.Lock()
		_ = c.nc.SetWriteDeadline(deadline.Add(time.Second))
		_, err := c.w.Write(h[:])
		c.wmu.Unlock()
		if err == nil && !c.info.TLS {
			if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
			// The server closes its side after NBD_CMD_DISC.
			select {
			case <-c.dead:
			case <-time.After(time.Until(deadline) + time.Second):
			}
		}
	}
	c.abort(ErrClosed)
	<-c.dead
}

// isConnError reports whether err broke a connection.
func isConnError(err error) bool {
	var ce *connError
	return errors.As(err, &ce)
}
