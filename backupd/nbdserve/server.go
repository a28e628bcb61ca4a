package nbdserve

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
	"syscall"

	"github.com/cairnbackup/cairn/backupd/nbd"
	"github.com/cairnbackup/cairn/blockmap"
)

// Source is what an export serves: blockmap.DiskReader is one.
type Source interface {
	io.ReaderAt
	Size() int64
	// NextData and NextHole follow the SEEK_DATA/SEEK_HOLE contract
	// (blockmap.ErrNoData past the end).
	NextData(off int64) (int64, error)
	NextHole(off int64) (int64, error)
}

// Options configure an export.
type Options struct {
	// Name is the export's name (clients asking for another name are
	// refused; "" accepts any name and lists as "").
	Name string
	// Overlay, when set, is the file that takes writes (see package doc);
	// without it the export is read-only.
	Overlay string
	// OverlayBase names what the overlay's writes are made over (the VM,
	// point and disk); it is kept with the overlay file (an xattr) and an
	// existing overlay written over another base is refused
	// (ErrOverlayBase): its blocks would show over bytes they were not
	// written on. "" checks nothing.
	OverlayBase string
	// Description is sent to clients that list exports.
	Description string
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// Export is a disk served over NBD.
type Export struct {
	src  Source
	size int64
	opts Options
	ov   *overlay
	log  *slog.Logger
	// bufs pools READ buffers: a fresh zeroed buffer per READ (nbdcopy
	// asks 256 KiB at a time) costs about as much as the read itself.
	bufs sync.Pool
}

// NewExport prepares src for serving. Close releases the overlay.
func NewExport(src Source, opts Options) (*Export, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	e := &Export{src: src, size: src.Size(), opts: opts, log: opts.Logger}
	if opts.Overlay != "" {
		ov, err := openOverlay(opts.Overlay, src, e.size, opts.OverlayBase)
		if err != nil {
			return nil, err
		}
		e.ov = ov
	}
	return e, nil
}

// Close closes the overlay file (after syncing it).
func (e *Export) Close() error {
	if e.ov == nil {
		return nil
	}
	err := e.ov.Sync()
	if cerr := e.ov.Close(); err == nil {
		err = cerr
	}
	return err
}

// Writable reports whether the export takes writes (it has an overlay).
func (e *Export) Writable() bool { return e.ov != nil }

func (e *Export) flags() uint16 {
	f := nbd.FlagHasFlags | nbd.FlagCanMultiConn | nbd.FlagSendCache
	if e.ov == nil {
		return f | nbd.FlagReadOnly
	}
	return f | nbd.FlagSendFlush | nbd.FlagSendFUA | nbd.FlagSendTrim | nbd.FlagSendWriteZeroes
}

func (e *Export) readAt(p []byte, off int64) error {
	var err error
	if e.ov != nil {
		clear(p) // p is reused: an overlay file read short must not show old bytes
		_, err = e.ov.ReadAt(p, off)
	} else {
		_, err = e.src.ReadAt(p, off)
	}
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return err
}

// Serve accepts clients on ln until ctx ends (then ln and every
// connection are closed) or ln fails. It returns nil after ctx ended.
func (e *Export) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("nbd export: accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			defer c.Close()
			if err := e.serveConn(c); err != nil && ctx.Err() == nil {
				e.log.Info("nbd client ended", "client", c.RemoteAddr().String(), "reason", err)
			}
		}()
	}
}

// conn is one client connection.
type conn struct {
	e          *Export
	c          net.Conn
	r          *bufio.Reader
	wmu        sync.Mutex
	w          *bufio.Writer
	structured bool
	meta       bool // base:allocation selected
}

var errClientDone = errors.New("client disconnected")

func (e *Export) serveConn(nc net.Conn) error {
	c := &conn{e: e, c: nc, r: bufio.NewReaderSize(nc, 1<<16), w: bufio.NewWriterSize(nc, 1<<16)}
	ok, err := c.handshake()
	if err != nil || !ok {
		return err
	}
	return c.transmit()
}

func (c *conn) handshake() (bool, error) {
	var hdr [18]byte
	binary.BigEndian.PutUint64(hdr[0:], magicNBD)
	binary.BigEndian.PutUint64(hdr[8:], magicOption)
	binary.BigEndian.PutUint16(hdr[16:], flagFixedNewstyle|flagNoZeroes)
	if _, err := c.w.Write(hdr[:]); err != nil {
		return false, err
	}
	if err := c.w.Flush(); err != nil {
		return false, err
	}
	var cf [4]byte
	if _, err := io.ReadFull(c.r, cf[:]); err != nil {
		return false, err
	}
	clientFlags := binary.BigEndian.Uint32(cf[:])
	if clientFlags&clientFlagFixedNewstyle == 0 {
		return false, errors.New("client does not speak fixed newstyle")
	}
	noZeroes := clientFlags&clientFlagNoZeroes != 0
	for {
		var oh [16]byte
		if _, err := io.ReadFull(c.r, oh[:]); err != nil {
			return false, err
		}
		if binary.BigEndian.Uint64(oh[0:]) != magicOption {
			return false, errors.New("bad option magic")
		}
		opt, n := binary.BigEndian.Uint32(oh[8:]), binary.BigEndian.Uint32(oh[12:])
		if n > maxOption {
			return false, fmt.Errorf("option %d: %d bytes of data is too much", opt, n)
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(c.r, data); err != nil {
			return false, err
		}
		switch opt {
		case optExportName:
			if !c.nameOK(string(data)) {
				return false, fmt.Errorf("client asked for unknown export %q", data)
			}
			var b [10 + 124]byte
			binary.BigEndian.PutUint64(b[0:], uint64(c.e.size))
			binary.BigEndian.PutUint16(b[8:], c.e.flags())
			out := b[:10]
			if !noZeroes {
				out = b[:]
			}
			if _, err := c.w.Write(out); err != nil {
				return false, err
			}
			return true, c.w.Flush()
		case optAbort:
			_ = c.optReply(opt, repAck, nil)
			return false, nil
		case optList:
			name := []byte(c.e.opts.Name)
			p := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
			p = append(p, name...)
			if err := c.optReply(opt, repServer, p); err != nil {
				return false, err
			}
			if err := c.optReply(opt, repAck, nil); err != nil {
				return false, err
			}
		case optStructuredReply:
			c.structured = true
			if err := c.optReply(opt, repAck, nil); err != nil {
				return false, err
			}
		case optInfo, optGo:
			name, _, ok := parseNameInfo(data)
			switch {
			case !ok:
				err := c.optReply(opt, repErrInvalid, []byte("malformed INFO/GO request"))
				if err != nil {
					return false, err
				}
				continue
			case !c.nameOK(name):
				if err := c.optReply(opt, repErrUnknown, []byte("no export named "+name)); err != nil {
					return false, err
				}
				continue
			}
			p := binary.BigEndian.AppendUint16(nil, infoExport)
			p = binary.BigEndian.AppendUint64(p, uint64(c.e.size))
			p = binary.BigEndian.AppendUint16(p, c.e.flags())
			if err := c.optReply(opt, repInfo, p); err != nil {
				return false, err
			}
			p = binary.BigEndian.AppendUint16(nil, infoBlockSize)
			p = binary.BigEndian.AppendUint32(p, 1)
			p = binary.BigEndian.AppendUint32(p, 4096)
			p = binary.BigEndian.AppendUint32(p, maxPayload)
			if err := c.optReply(opt, repInfo, p); err != nil {
				return false, err
			}
			if err := c.optReply(opt, repAck, nil); err != nil {
				return false, err
			}
			if opt == optGo {
				return true, nil
			}
		case optListMetaContext, optSetMetaContext:
			if err := c.metaContext(opt, data); err != nil {
				return false, err
			}
		default:
			// STARTTLS and anything newer
			if err := c.optReply(opt, repErrUnsup, nil); err != nil {
				return false, err
			}
		}
	}
}

func (c *conn) nameOK(name string) bool {
	return c.e.opts.Name == "" || name == c.e.opts.Name
}

func (c *conn) optReply(opt, typ uint32, data []byte) error {
	var h [20]byte
	binary.BigEndian.PutUint64(h[0:], magicOptReply)
	binary.BigEndian.PutUint32(h[8:], opt)
	binary.BigEndian.PutUint32(h[12:], typ)
	binary.BigEndian.PutUint32(h[16:], uint32(len(data)))
	if _, err := c.w.Write(h[:]); err != nil {
		return err
	}
	if _, err := c.w.Write(data); err != nil {
		return err
	}
	return c.w.Flush()
}

// parseNameInfo splits INFO/GO data: name and requested info types.
func parseNameInfo(d []byte) (string, []uint16, bool) {
	if len(d) < 4 {
		return "", nil, false
	}
	n := binary.BigEndian.Uint32(d)
	if uint64(len(d)) < 4+uint64(n)+2 {
		return "", nil, false
	}
	name := string(d[4 : 4+n])
	rest := d[4+n:]
	k := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) != 2*k {
		return "", nil, false
	}
	var infos []uint16
	for i := 0; i < k; i++ {
		infos = append(infos, binary.BigEndian.Uint16(rest[2*i:]))
	}
	return name, infos, true
}

// metaContext answers LIST_META_CONTEXT and SET_META_CONTEXT: the only
// context is base:allocation.
func (c *conn) metaContext(opt uint32, d []byte) error {
	if opt == optSetMetaContext && !c.structured {
		return c.optReply(opt, repErrInvalid, []byte("structured replies must be negotiated first"))
	}
	bad := func() error { return c.optReply(opt, repErrInvalid, []byte("malformed meta context request")) }
	if len(d) < 4 {
		return bad()
	}
	n := binary.BigEndian.Uint32(d)
	if uint64(len(d)) < 8+uint64(n) {
		return bad()
	}
	if !c.nameOK(string(d[4 : 4+n])) {
		return c.optReply(opt, repErrUnknown, nil)
	}
	rest := d[4+n:]
	q := binary.BigEndian.Uint32(rest)
	rest = rest[4:]
	want := q == 0 && opt == optListMetaContext
	for i := uint32(0); i < q; i++ {
		if len(rest) < 4 {
			return bad()
		}
		l := binary.BigEndian.Uint32(rest)
		if uint64(len(rest)) < 4+uint64(l) {
			return bad()
		}
		qs := string(rest[4 : 4+l])
		rest = rest[4+l:]
		if qs == nbd.ContextBaseAllocation || (opt == optListMetaContext && qs == "base:") {
			want = true
		}
	}
	if opt == optSetMetaContext {
		c.meta = want
	}
	if want {
		p := binary.BigEndian.AppendUint32(nil, baseAllocationID)
		p = append(p, nbd.ContextBaseAllocation...)
		if err := c.optReply(opt, repMetaContext, p); err != nil {
			return err
		}
	}
	return c.optReply(opt, repAck, nil)
}

// request is one transmission-phase request.
type request struct {
	flags  uint16
	typ    uint16
	cookie uint64
	off    uint64
	length uint32
	data   []byte
}

// transmit serves requests until the client disconnects: up to 16 at a
// time; replies are written whole under a lock.
func (c *conn) transmit() error {
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		var h [28]byte
		if _, err := io.ReadFull(c.r, h[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return errClientDone
			}
			return err
		}
		if binary.BigEndian.Uint32(h[0:]) != magicRequest {
			return errors.New("bad request magic")
		}
		rq := request{
			flags: binary.BigEndian.Uint16(h[4:]), typ: binary.BigEndian.Uint16(h[6:]),
			cookie: binary.BigEndian.Uint64(h[8:]), off: binary.BigEndian.Uint64(h[16:]), length: binary.BigEndian.Uint32(h[24:]),
		}
		if rq.typ == cmdDisc {
			return nil
		}
		if rq.typ == cmdWrite {
			if rq.length > maxPayload {
				return fmt.Errorf("write of %d bytes is larger than the %d the server allows", rq.length, maxPayload)
			}
			rq.data = make([]byte, rq.length)
			if _, err := io.ReadFull(c.r, rq.data); err != nil {
				return err
			}
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := c.handle(rq); err != nil {
				c.c.Close() // a reply that cannot be sent ends the connection
			}
		}()
	}
}

func (c *conn) handle(rq request) error {
	e := c.e
	end := rq.off + uint64(rq.length)
	if end < rq.off || end > uint64(e.size) {
		return c.replyErr(rq, errInval, "request beyond the end of the disk")
	}
	switch rq.typ {
	case cmdRead:
		if rq.length > maxPayload {
			return c.replyErr(rq, errOverflow, "read larger than the maximum block size")
		}
		bufp := e.getReadBuf(int(rq.length))
		defer e.putReadBuf(bufp)
		buf := *bufp
		if err := e.readAt(buf, int64(rq.off)); err != nil {
			e.log.Error("nbd read failed", "offset", rq.off, "length", rq.length, "error", err)
			return c.replyErr(rq, errIO, "read failed")
		}
		return c.replyData(rq, buf)
	case cmdWrite, cmdTrim, cmdWriteZeroes:
		if e.ov == nil {
			return c.replyErr(rq, errPerm, "read-only export")
		}
		var err error
		if rq.typ == cmdWrite {
			err = e.ov.WriteAt(rq.data, int64(len(rq.data)), int64(rq.off))
		} else if rq.length > 0 {
			err = e.ov.WriteAt(nil, int64(rq.length), int64(rq.off))
		}
		if err == nil && rq.flags&cmdFlagFUA != 0 {
			err = e.ov.Sync()
		}
		if err != nil {
			e.log.Error("nbd write to the overlay failed", "offset", rq.off, "error", err)
			code := errIO
			if errors.Is(err, syscall.ENOSPC) {
				code = errNoSpc
			}
			return c.replyErr(rq, code, "write to the overlay failed")
		}
		return c.replyDone(rq)
	case cmdFlush:
		if e.ov != nil {
			if err := e.ov.Sync(); err != nil {
				return c.replyErr(rq, errIO, "flush failed")
			}
		}
		return c.replyDone(rq)
	case cmdCache:
		return c.replyDone(rq)
	case cmdBlockStatus:
		if !c.meta {
			return c.replyErr(rq, errInval, "no metadata context negotiated")
		}
		return c.replyStatus(rq, e.status(int64(rq.off), int64(rq.length), rq.flags&cmdFlagReqOne != 0))
	}
	return c.replyErr(rq, errNotSup, "unknown command")
}

// status describes [off, off+length) as base:allocation descriptors
// (length, flags): holes of the point that the overlay did not write are
// HOLE|ZERO, the rest data.
func (e *Export) status(off, length int64, one bool) []uint32 {
	end := off + length
	var out []uint32
	add := func(n int64, f uint32) {
		if k := len(out); k > 0 && out[k-1] == f && int64(out[k-2])+n < 1<<31 {
			out[k-2] += uint32(n)
			return
		}
		out = append(out, uint32(n), f)
	}
	for off < end && len(out) < 2*maxStatusDescriptors {
		stop := min(end, off+1<<30)
		if e.ov != nil {
			w, wend := e.ov.writtenFrom(off, stop)
			if w {
				add(wend-off, 0)
				off = wend
				if one {
					break
				}
				continue
			}
			stop = wend
		}
		d, err := e.src.NextData(off)
		if errors.Is(err, blockmap.ErrNoData) || err != nil {
			d = e.size
		}
		if d > off {
			n := min(d, stop) - off
			add(n, nbd.StateHole|nbd.StateZero)
			off += n
		} else {
			h, err := e.src.NextHole(off)
			if err != nil {
				h = e.size
			}
			n := min(h, stop) - off
			add(n, 0)
			off += n
		}
		if one {
			break
		}
	}
	return out
}

func (c *conn) writeReply(parts ...[]byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for _, p := range parts {
		if _, err := c.w.Write(p); err != nil {
			return err
		}
	}
	return c.w.Flush()
}

func (c *conn) simple(rq request, code uint32) []byte {
	h := binary.BigEndian.AppendUint32(nil, magicSimple)
	h = binary.BigEndian.AppendUint32(h, code)
	return binary.BigEndian.AppendUint64(h, rq.cookie)
}

func (c *conn) chunk(rq request, flags, typ uint16, n int) []byte {
	h := binary.BigEndian.AppendUint32(nil, magicStructure)
	h = binary.BigEndian.AppendUint16(h, flags)
	h = binary.BigEndian.AppendUint16(h, typ)
	h = binary.BigEndian.AppendUint64(h, rq.cookie)
	return binary.BigEndian.AppendUint32(h, uint32(n))
}

func (c *conn) replyDone(rq request) error {
	if c.structured {
		return c.writeReply(c.chunk(rq, replyFlagDone, 0, 0))
	}
	return c.writeReply(c.simple(rq, 0))
}

func (c *conn) replyErr(rq request, code uint32, msg string) error {
	if c.structured {
		p := binary.BigEndian.AppendUint32(nil, code)
		p = binary.BigEndian.AppendUint16(p, uint16(len(msg)))
		p = append(p, msg...)
		return c.writeReply(c.chunk(rq, replyFlagDone, replyError, len(p)), p)
	}
	return c.writeReply(c.simple(rq, code))
}

func (c *conn) replyData(rq request, data []byte) error {
	var h []byte
	if c.structured {
		h = c.chunk(rq, replyFlagDone, replyOffsetData, 8+len(data))
		h = binary.BigEndian.AppendUint64(h, rq.off)
	} else {
		h = c.simple(rq, 0)
	}
	return c.writeData(h, data)
}

// writeData sends a reply header and its data with one writev, past the
// buffered writer (which every reply leaves flushed), so the data is not
// copied through the buffer in 64 KiB pieces.
func (c *conn) writeData(h, data []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.w.Flush(); err != nil {
		return err
	}
	bufs := net.Buffers{h, data}
	_, err := bufs.WriteTo(c.c)
	return err
}

// readBufMax is the largest READ whose buffer goes back to the pool.
const readBufMax = 4 << 20

func (e *Export) getReadBuf(n int) *[]byte {
	if n <= readBufMax {
		if bp, ok := e.bufs.Get().(*[]byte); ok && cap(*bp) >= n {
			*bp = (*bp)[:n]
			return bp
		}
	}
	b := make([]byte, n)
	return &b
}

func (e *Export) putReadBuf(bp *[]byte) {
	if cap(*bp) <= readBufMax {
		e.bufs.Put(bp)
	}
}

func (c *conn) replyStatus(rq request, desc []uint32) error {
	p := binary.BigEndian.AppendUint32(nil, baseAllocationID)
	for _, v := range desc {
		p = binary.BigEndian.AppendUint32(p, v)
	}
	return c.writeReply(c.chunk(rq, replyFlagDone, replyBlockStat, len(p)), p)
}
