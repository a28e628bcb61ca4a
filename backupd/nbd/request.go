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

// deliver copies data read at offset off into the request's buffer unless
// the submitter gave up on it. The caller has checked the bounds.
func (r *request) deliver(off uint64, data []byte) {
	r.mu.Lock()
	if !r.abandoned {
		copy(r.buf[off-r.off:], data)
	}
	r.mu.Unlock()
}

// zero fills [off, off+n) of the request's buffer with zeros.
func (r *request) zero(off uint64, n uint32) {
	r.mu.Lock()
	if !r.abandoned {
		clear(r.buf[off-r.off : off-r.off+uint64(n)])
	}
	r.mu.Unlock()
}

// abandon stops all further writes into the request's buffer.
func (r *request) abandon() {
	r.mu.Lock()
	r.abandoned = true
	r.mu.Unlock()
}
