package nbd

import "sync"

// request is one command in flight on a connection. The connection's reader
// goroutine owns the result fields until done is closed; the submitter reads
// them only afterwards.
type request struct {
	cookie uint64
	cmd    uint16
	off    uint64
	length uint32
	buf    []byte // NBD_CMD_READ destination, len(buf) == length
	ctxID  uint32 // NBD_CMD_BLOCK_STATUS: the context whose extents we keep

	mu        sync.Mutex // guards buf against writes after abandon
	abandoned bool

	covered   uint64   // read bytes delivered by data and hole chunks
	extents   []Extent // block status result
	gotStatus bool
	err       error // first error the server reported for this request
	connErr   error // the connection broke before the request completed
	done      chan struct{}
}

func newRequest(cmd uint16, off uint64, length uint32) *request {
	return &request{cmd: cmd, off: off, length: length, done: make(chan struct{})}
}

// setErr records the first error of the request.
func (r *request) setErr(err error) {
	if r.err == nil {
		r.err = err
	}
}

// claim returns the part of the request's buffer for n bytes at offset
// off, locked so that the connection's reader can read the payload
// straight into it (no copy through a scratch buffer); release unlocks
// it. It returns nil when the submitter gave up on the request. The
// caller has checked the bounds.
func (r *request) claim(off, n uint64) []byte {
	r.mu.Lock()
	if r.abandoned {
		r.mu.Unlock()
		return nil
	}
	return r.buf[off-r.off : off-r.off+n]
}

// release ends a claim.
func (r *request) release() { r.mu.Unlock() }

// zero fills [off, off+n) of the request's buffer with zeros.
func (r *request) zero(off uint64, n uint32) {
	r.mu.Lock()
	if !r.abandoned {
		clear(r.buf[off-r.off : off-r.off+uint64(n)])
	}
	r.mu.Unlock()
}

// abandon stops all further writes into the request's buffer. It waits
// while the reader is filling the buffer.
func (r *request) abandon() {
	r.mu.Lock()
	r.abandoned = true
	r.mu.Unlock()
}

// tryAbandon abandons the request unless the reader is filling its buffer
// right now; it reports whether it did.
func (r *request) tryAbandon() bool {
	if !r.mu.TryLock() {
		return false
	}
	r.abandoned = true
	r.mu.Unlock()
	return true
}
