package nbd

import (
	"math/bits"
	"sync"
)

// request is one command in flight on a connection. The connection's reader
// goroutine owns the result fields until done is closed; the submitter reads
// them only afterwards.
type request struct {
	cookie uint64
	flags  uint16 // command flags (NBD_CMD_FLAG_*)
	cmd    uint16
	off    uint64
	length uint32
	buf    []byte // NBD_CMD_READ destination, len(buf) == length
	// payload is sent after the header (NBD_CMD_WRITE), len == length
	payload []byte
	ctxID   uint32 // NBD_CMD_BLOCK_STATUS: the context whose extents we keep

	mu        sync.Mutex // guards buf against writes after abandon
	abandoned bool

	covered   uint64   // read bytes delivered by data and hole chunks, see cover
	runLo     uint64   // while seen is nil, the chunks delivered exactly
	runHi     uint64   // [off+runLo, off+runHi) of the read
	seen      []uint64 // bit i set: read byte off+i delivered; nil until needed
	extents   []Extent // block status result
	gotStatus bool
	statusIDs []uint32 // contexts whose block status chunk arrived
	errChunks int      // error chunks received
	err       error    // first error the server reported for this request
	connErr   error    // the connection broke before the request completed
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

// cover records that a data or hole chunk (kind names which) delivers
// the n > 0 bytes at offset off of the read, which the caller has
// checked lie inside it. The server must not send chunks that overlap:
// when some of the bytes were delivered by an earlier chunk, cover
// records nothing and returns a protocol error, which the reader treats
// like any malformed chunk: it drops the connection. Without overlaps,
// covered reaching the read length means every byte of the buffer was
// written.
//
// Chunks nearly always arrive in order and then form one run that grows
// at either end, which needs no memory. The first chunk that does not
// touch the run switches to a bitmap of the read, one bit per byte, so
// that the cost stays linear in the read length whatever the number and
// order of the chunks.
func (r *request) cover(kind string, off, n uint64) error {
	lo, hi := off-r.off, off-r.off+n
	switch {
	case r.seen != nil: // checked against the bitmap below
	case r.covered == 0:
		r.runLo, r.runHi, r.covered = lo, hi, n
		return nil
	case lo == r.runHi:
		r.runHi = hi
		r.covered += n
		return nil
	case hi == r.runLo:
		r.runLo = lo
		r.covered += n
		return nil
	case lo < r.runHi && hi > r.runLo:
		return r.overlapError(kind, off, n, max(lo, r.runLo))
	default:
		r.seen = make([]uint64, (uint64(r.length)+63)/64)
		setBits(r.seen, r.runLo, r.runHi)
	}
	if i := firstSet(r.seen, lo, hi); i < hi {
		return r.overlapError(kind, off, n, i)
	}
	setBits(r.seen, lo, hi)
	r.covered += n
	return nil
}

// overlapError reports a chunk [off,+n) of the read whose byte at offset
// r.off+at an earlier chunk delivered.
func (r *request) overlapError(kind string, off, n, at uint64) error {
	return protocolErrorf("%s chunk [%d,+%d) overlaps an earlier chunk at offset %d of read [%d,+%d)",
		kind, off, n, r.off+at, r.off, r.length)
}

// setBits sets bits [from, to) of b.
func setBits(b []uint64, from, to uint64) {
	for from < to {
		s := from % 64
		k := min(64-s, to-from)
		b[from/64] |= ^uint64(0) >> (64 - k) << s
		from += k
	}
}

// firstSet returns the first set bit of b in [from, to), or to if there
// is none.
func firstSet(b []uint64, from, to uint64) uint64 {
	for from < to {
		if w := b[from/64] >> (from % 64); w != 0 {
			return min(from+uint64(bits.TrailingZeros64(w)), to)
		}
		from = from - from%64 + 64
	}
	return to
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
