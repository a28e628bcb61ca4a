package nbdtest

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
)

// Mode is how the server misbehaves.
type Mode int

const (
	// Honest serves the export correctly (a control).
	Honest Mode = iota
	// EndlessErrorChunks answers every request with non-final error
	// chunks, for ever.
	EndlessErrorChunks
	// EndlessUnknownContext answers block status with non-final chunks
	// for a context id that was never negotiated, for ever.
	EndlessUnknownContext
	// TinyExtents describes the export in alternating 1-byte data and
	// hole extents (as many as one reply holds).
	TinyExtents
	// SilentHandshake accepts connections and never says a word.
	SilentHandshake
	// StallMidReply starts the reply to a read and then sends nothing more,
	// keeping the connection open.
	StallMidReply
	// AbsurdSize announces an export of 2^62 bytes.
	AbsurdSize
)

// Wire constants (NBD protocol specification).
const (
	magicNBD       = 0x4e42444d41474943
	magicOption    = 0x49484156454F5054
	magicOptReply  = 0x0003e889045565a9
	magicRequest   = 0x25609513
	magicStructure = 0x668e33ef

	optExportName     = 1
	optGo             = 7
	optStructuredRepl = 8
	optSetMetaContext = 10

	repAck         = 1
	repInfo        = 3
	repMetaContext = 4
	repErrUnsup    = 1<<31 | 1

	cmdRead        = 0
	cmdDisc        = 2
	cmdBlockStatus = 7

	replyFlagDone   = 1
	replyOffsetData = 1
	replyBlockStat  = 5
	replyError      = 1<<15 | 1

	flagHasFlags = 1
	flagReadOnly = 2

	baseAllocationID = 1
	stateHole        = 1
	stateZero        = 2
)

// Server is a misbehaving NBD server on a unix socket.
type Server struct {
	mode Mode
	size uint64
	ln   net.Listener

	mu       sync.Mutex
	conns    map[net.Conn]bool
	accepted int
	wg       sync.WaitGroup
}

// Start listens on socket and serves an export of size bytes in mode.
// Close stops it.
func Start(socket string, mode Mode, size uint64) (*Server, error) {
	if mode == AbsurdSize {
		size = 1 << 62
	}
	ln, err := net.Listen("unix", socket)
	if err != nil {
		return nil, err
	}
	s := &Server{mode: mode, size: size, ln: ln, conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Close stops listening and drops every connection.
func (s *Server) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = true
		s.accepted++
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_ = s.serve(c)
			c.Close()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

type session struct {
	s *Server
	r *bufio.Reader
	w *bufio.Writer
}

func (s *Server) serve(c net.Conn) error {
	if s.mode == SilentHandshake {
		_, err := io.Copy(io.Discard, c) // until the client gives up
		return err
	}
	ss := &session{s: s, r: bufio.NewReader(c), w: bufio.NewWriterSize(c, 1<<20)}
	if err := ss.handshake(); err != nil {
		return err
	}
	return ss.transmission()
}

func (ss *session) put(v ...any) {
	for _, x := range v {
		_ = binary.Write(ss.w, binary.BigEndian, x)
	}
}

func (ss *session) optReply(opt, typ uint32, data []byte) error {
	ss.put(uint64(magicOptReply), opt, typ, uint32(len(data)))
	ss.w.Write(data)
	return ss.w.Flush()
}

func (ss *session) handshake() error {
	ss.put(uint64(magicNBD), uint64(magicOption), uint16(1|2)) // fixed newstyle, no zeroes
	if err := ss.w.Flush(); err != nil {
		return err
	}
	var clientFlags uint32
	if err := binary.Read(ss.r, binary.BigEndian, &clientFlags); err != nil {
		return err
	}
	for {
		var h struct {
			Magic uint64
			Opt   uint32
			Len   uint32
		}
		if err := binary.Read(ss.r, binary.BigEndian, &h); err != nil {
			return err
		}
		if h.Magic != magicOption || h.Len > 1<<16 {
			return errors.New("bad option")
		}
		data := make([]byte, h.Len)
		if _, err := io.ReadFull(ss.r, data); err != nil {
			return err
		}
		flags := uint16(flagHasFlags | flagReadOnly)
		switch h.Opt {
		case optStructuredRepl:
			if err := ss.optReply(h.Opt, repAck, nil); err != nil {
				return err
			}
		case optSetMetaContext:
			reply := binary.BigEndian.AppendUint32(nil, baseAllocationID)
			reply = append(reply, "base:allocation"...)
			if err := ss.optReply(h.Opt, repMetaContext, reply); err != nil {
				return err
			}
			if err := ss.optReply(h.Opt, repAck, nil); err != nil {
				return err
			}
		case optGo:
			info := binary.BigEndian.AppendUint16(nil, 0) // NBD_INFO_EXPORT
			info = binary.BigEndian.AppendUint64(info, ss.s.size)
			info = binary.BigEndian.AppendUint16(info, flags)
			if err := ss.optReply(h.Opt, repInfo, info); err != nil {
				return err
			}
			return ss.optReply(h.Opt, repAck, nil)
		case optExportName:
			ss.put(ss.s.size, flags)
			return ss.w.Flush()
		default:
			if err := ss.optReply(h.Opt, repErrUnsup, nil); err != nil {
				return err
			}
		}
	}
}

// chunk writes one structured reply chunk.
func (ss *session) chunk(flags, typ uint16, cookie uint64, payload ...[]byte) {
	n := 0
	for _, p := range payload {
		n += len(p)
	}
	ss.put(uint32(magicStructure), flags, typ, cookie, uint32(n))
	for _, p := range payload {
		ss.w.Write(p)
	}
}

// Byte is the byte the export holds at off: a pattern, zero in the holes
// that TinyExtents reports (odd offsets).
func (s *Server) Byte(off uint64) byte {
	if s.mode == TinyExtents && off%2 == 1 {
		return 0
	}
	return byte(off*7+off>>12) | 1
}

// Connections is how many connections the server accepted.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

func (ss *session) transmission() error {
	for {
		var rq struct {
			Magic  uint32
			Flags  uint16
			Type   uint16
			Cookie uint64
			Off    uint64
			Len    uint32
		}
		if err := binary.Read(ss.r, binary.BigEndian, &rq); err != nil {
			return err
		}
		if rq.Magic != magicRequest {
			return errors.New("bad request magic")
		}
		switch {
		case rq.Type == cmdDisc:
			return nil
		case ss.s.mode == EndlessErrorChunks:
			msg := []byte("not yet")
			p := binary.BigEndian.AppendUint32(nil, 5) // EIO
			p = binary.BigEndian.AppendUint16(p, uint16(len(msg)))
			p = append(p, msg...)
			for {
				ss.chunk(0, replyError, rq.Cookie, p)
				if err := ss.w.Flush(); err != nil {
					return err
				}
			}
		case ss.s.mode == EndlessUnknownContext && rq.Type == cmdBlockStatus:
			p := binary.BigEndian.AppendUint32(nil, 77) // never negotiated
			p = binary.BigEndian.AppendUint32(p, rq.Len)
			p = binary.BigEndian.AppendUint32(p, 0)
			for {
				ss.chunk(0, replyBlockStat, rq.Cookie, p)
				if err := ss.w.Flush(); err != nil {
					return err
				}
			}
		case rq.Type == cmdBlockStatus:
			ss.blockStatus(rq.Cookie, rq.Off, rq.Len)
		case rq.Type == cmdRead && ss.s.mode == StallMidReply:
			half := rq.Len / 2
			ss.put(uint32(magicStructure), uint16(0), uint16(replyOffsetData), rq.Cookie, rq.Len+8, rq.Off)
			ss.w.Write(make([]byte, half))
			if err := ss.w.Flush(); err != nil {
				return err
			}
			_, err := io.Copy(io.Discard, ss.r) // and never another byte
			return err
		case rq.Type == cmdRead:
			data := make([]byte, rq.Len)
			for i := range data {
				data[i] = ss.s.Byte(rq.Off + uint64(i))
			}
			ss.chunk(replyFlagDone, replyOffsetData, rq.Cookie, binary.BigEndian.AppendUint64(nil, rq.Off), data)
		default:
			p := binary.BigEndian.AppendUint32(nil, 22) // EINVAL
			p = binary.BigEndian.AppendUint16(p, 0)
			ss.chunk(replyFlagDone, replyError, rq.Cookie, p)
		}
		if err := ss.w.Flush(); err != nil {
			return err
		}
	}
}

// blockStatus answers for base:allocation: all data, or (TinyExtents)
// alternating 1-byte data and hole extents, 1M of them at most.
func (ss *session) blockStatus(cookie, off uint64, length uint32) {
	p := binary.BigEndian.AppendUint32(nil, baseAllocationID)
	if ss.s.mode != TinyExtents {
		p = binary.BigEndian.AppendUint32(p, length)
		p = binary.BigEndian.AppendUint32(p, 0)
		ss.chunk(replyFlagDone, replyBlockStat, cookie, p)
		return
	}
	n := min(length, 1<<20)
	p = make([]byte, 4, 4+8*n)
	binary.BigEndian.PutUint32(p, baseAllocationID)
	for i := uint32(0); i < n; i++ {
		var flags uint32
		if (off+uint64(i))%2 == 1 {
			flags = stateHole | stateZero
		}
		p = binary.BigEndian.AppendUint32(p, 1)
		p = binary.BigEndian.AppendUint32(p, flags)
	}
	ss.chunk(replyFlagDone, replyBlockStat, cookie, p)
}
