package nbd

import (
	"encoding/binary"
)

// Pure parsers of structured reply chunk payloads. They never panic on bad
// input: they return an error wrapping ErrProtocol.

// parseOffsetHole parses an NBD_REPLY_TYPE_OFFSET_HOLE payload.
func parseOffsetHole(p []byte) (off uint64, length uint32, err error) {
	if len(p) != 12 {
		return 0, 0, protocolErrorf("hole chunk of %d bytes", len(p))
	}
	off = binary.BigEndian.Uint64(p[0:8])
	length = binary.BigEndian.Uint32(p[8:12])
	if length == 0 {
		return 0, 0, protocolErrorf("empty hole chunk")
	}
	return off, length, nil
}

// parseChunkError parses an NBD_REPLY_TYPE_ERROR, NBD_REPLY_TYPE_ERROR_OFFSET
// or unknown error chunk payload.
func parseChunkError(typ uint16, p []byte) (*ServerError, error) {
	if len(p) < 6 {
		return nil, protocolErrorf("error chunk of %d bytes", len(p))
	}
	se := &ServerError{Errno: binary.BigEndian.Uint32(p[0:4]), Offset: -1}
	if se.Errno == 0 {
		return nil, protocolErrorf("error chunk with errno 0")
	}
	msgLen := int(binary.BigEndian.Uint16(p[4:6]))
	if 6+msgLen > len(p) {
		return nil, protocolErrorf("error message of %d bytes in a %d-byte chunk", msgLen, len(p))
	}
	se.Message = printable(p[6 : 6+msgLen])
	rest := p[6+msgLen:]
	switch typ {
	case replyTypeError:
		if len(rest) != 0 {
			return nil, protocolErrorf("%d trailing bytes in error chunk", len(rest))
		}
	case replyTypeErrorOffset:
		if len(rest) != 8 {
			return nil, protocolErrorf("error-offset chunk has %d bytes after the message", len(rest))
		}
		off := binary.BigEndian.Uint64(rest)
		if off > 1<<62 {
			return nil, protocolErrorf("error offset %d out of range", off)
		}
		se.Offset = int64(off)
	}
	return se, nil
}

// parseBlockStatus parses an NBD_REPLY_TYPE_BLOCK_STATUS payload into the
// context id and the extents starting at base.
func parseBlockStatus(p []byte, base uint64) (uint32, []Extent, error) {
	if len(p) < 12 || (len(p)-4)%8 != 0 {
		return 0, nil, protocolErrorf("block status chunk of %d bytes", len(p))
	}
	id := binary.BigEndian.Uint32(p[0:4])
	n := (len(p) - 4) / 8
	ext := make([]Extent, 0, n)
	off := base
	for i := 0; i < n; i++ {
		d := p[4+8*i:]
		length := binary.BigEndian.Uint32(d[0:4])
		if length == 0 {
			return 0, nil, protocolErrorf("block status descriptor %d has length 0", i)
		}
		ext = append(ext, Extent{Offset: int64(off), Length: int64(length), Flags: binary.BigEndian.Uint32(d[4:8])})
		off += uint64(length)
	}
	return id, ext, nil
}
