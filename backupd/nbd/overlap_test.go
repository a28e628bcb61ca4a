package nbd

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
)

// overlapBase and overlapLen are the read that the overlap tests answer.
const (
	overlapBase = 1 << 20
	overlapLen  = 8192
)

// stale fills a read buffer before the reply, standing in for the bytes an
// earlier read left there.
const stale = 0xee

// testChunk is one data (hole false) or hole chunk of a reply to the
// overlap tests' read, at offset off relative to the read.
type testChunk struct {
	hole bool
	off  uint64
	n    uint64
	fill byte // data chunks: the payload byte
}

// encode returns the chunk as the server sends it, with the done flag if
// last.
func (ch testChunk) encode(last bool) []byte {
	var flags uint16
	if last {
		flags = replyFlagDone
	}
	if ch.hole {
		return chunkBytes(flags, replyTypeOffsetHole, 1, cat(be64(overlapBase+ch.off), be32(uint32(ch.n))))
	}
	return chunkBytes(flags, replyTypeOffsetData, 1, cat(be64(overlapBase+ch.off), bytes.Repeat([]byte{ch.fill}, int(ch.n))))
}

// runRead answers a pending overlapLen-byte read at overlapBase with
// chunks, runs the connection's reader until the stream ends and returns
// the request and what conn.do would have returned for it.
func runRead(t *testing.T, chunks []testChunk) (*request, error) {
	t.Helper()
	var in []byte
	for i, ch := range chunks {
		in = append(in, ch.encode(i == len(chunks)-1)...)
	}
	client, server := net.Pipe()
	defer server.Close()
	c := newConn(client, nil, ExportInfo{StructuredReplies: true}, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	c.r.Reset(bytes.NewReader(in))
	req := newRequest(cmdRead, overlapBase, overlapLen)
	req.buf = bytes.Repeat([]byte{stale}, overlapLen)
	req.cookie = 1
	c.pending[1] = req
	c.readLoop()
	select {
	case <-req.done:
	default:
		t.Fatal("request still pending after the reader stopped")
	}
	if req.connErr != nil {
		return req, &connError{req.connErr}
	}
	return req, req.err
}

// TestOverlappingChunksRejected checks that chunks overlapping earlier
// ones fail the read with a protocol error that drops the connection,
// even when their lengths add up to the read length, and that they do
// not overwrite what the earlier chunk delivered.
func TestOverlappingChunksRejected(t *testing.T) {
	for _, tc := range []struct {
		name   string
		chunks []testChunk
		want   string // the error names the offending chunk and first overlapping byte
	}{{
		name:   "same data twice",
		chunks: []testChunk{{off: 0, n: 4096, fill: 1}, {off: 0, n: 4096, fill: 2}},
		want:   "data chunk [1048576,+4096) overlaps an earlier chunk at offset 1048576 of read [1048576,+8192)",
	}, {
		name:   "data partly over data",
		chunks: []testChunk{{off: 0, n: 6144, fill: 1}, {off: 4096, n: 2048, fill: 2}},
		want:   "data chunk [1052672,+2048) overlaps an earlier chunk at offset 1052672",
	}, {
		name:   "data over the start of data",
		chunks: []testChunk{{off: 2047, n: 6144, fill: 1}, {off: 0, n: 2048, fill: 2}},
		want:   "data chunk [1048576,+2048) overlaps an earlier chunk at offset 1050623",
	}, {
		name:   "hole over data",
		chunks: []testChunk{{off: 0, n: 4096, fill: 1}, {hole: true, off: 0, n: 4096}},
		want:   "hole chunk [1048576,+4096) overlaps an earlier chunk at offset 1048576",
	}, {
		name:   "data over hole",
		chunks: []testChunk{{hole: true, off: 4096, n: 4096}, {off: 4096, n: 4096, fill: 1}},
		want:   "data chunk [1052672,+4096) overlaps an earlier chunk at offset 1052672",
	}, {
		// Chunks out of order, so the overlap is found in the bitmap.
		name: "out of order data over hole",
		chunks: []testChunk{
			{hole: true, off: 4096, n: 4096}, {off: 0, n: 2048, fill: 1}, {off: 6144, n: 2048, fill: 2},
		},
		want: "data chunk [1054720,+2048) overlaps an earlier chunk at offset 1054720",
	}, {
		name: "out of order hole straddling data",
		chunks: []testChunk{
			{off: 6144, n: 2048, fill: 1}, {off: 0, n: 1024, fill: 2}, {off: 3000, n: 100, fill: 3},
			{hole: true, off: 1024, n: 5020},
		},
		want: "hole chunk [1049600,+5020) overlaps an earlier chunk at offset 1051576",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var sum uint64
			for _, ch := range tc.chunks {
				sum += ch.n
			}
			if sum != overlapLen {
				t.Fatalf("bad test: chunks add up to %d bytes", sum)
			}
			req, err := runRead(t, tc.chunks)
			if err == nil {
				t.Fatalf("overlapping chunks accepted; buffer %x...", req.buf[:16])
			}
			if !errors.Is(err, ErrProtocol) || !isConnError(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a connection-breaking protocol error containing %q", err, tc.want)
			}
			first := tc.chunks[0]
			if want := bytes.Repeat([]byte{first.fill}, int(first.n)); !bytes.Equal(req.buf[first.off:first.off+first.n], want) {
				t.Fatal("overlapping chunk overwrote the first chunk")
			}
		})
	}
}

// TestDisjointChunksAccepted checks that chunks that do not overlap are
// accepted in any order and deliver every byte.
func TestDisjointChunksAccepted(t *testing.T) {
	tiny := make([]testChunk, 0, overlapLen)
	for i := range uint64(overlapLen) {
		tiny = append(tiny, testChunk{off: i, n: 1, fill: byte(i * 7)})
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(tiny), func(i, j int) { tiny[i], tiny[j] = tiny[j], tiny[i] })
	for _, tc := range []struct {
		name   string
		chunks []testChunk
	}{{
		name:   "one data chunk",
		chunks: []testChunk{{off: 0, n: overlapLen, fill: 1}},
	}, {
		name:   "adjacent in order",
		chunks: []testChunk{{off: 0, n: 2048, fill: 1}, {hole: true, off: 2048, n: 2048}, {off: 4096, n: 4096, fill: 2}},
	}, {
		name:   "reverse order",
		chunks: []testChunk{{off: 4096, n: 4096, fill: 1}, {hole: true, off: 1, n: 4095}, {off: 0, n: 1, fill: 2}},
	}, {
		name: "out of order",
		chunks: []testChunk{
			{off: 4096, n: 4096, fill: 1}, {hole: true, off: 0, n: 2048}, {off: 3000, n: 1096, fill: 2},
			{off: 2048, n: 952, fill: 3},
		},
	}, {
		name:   "one-byte chunks shuffled",
		chunks: tiny,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			want := make([]byte, overlapLen)
			for _, ch := range tc.chunks {
				if !ch.hole {
					copy(want[ch.off:], bytes.Repeat([]byte{ch.fill}, int(ch.n)))
				}
			}
			req, err := runRead(t, tc.chunks)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(req.buf, want) {
				t.Fatalf("read delivered %x..., want %x...", req.buf[:16], want[:16])
			}
		})
	}
}

// TestCoverageBitmap checks setBits and firstSet against a bool slice.
func TestCoverageBitmap(t *testing.T) {
	const n = 300
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		b := make([]uint64, (n+63)/64)
		var ref [n]bool
		for range 4 {
			from := rng.Uint64N(n)
			to := from + rng.Uint64N(n-from+1)
			setBits(b, from, to)
			for i := from; i < to; i++ {
				ref[i] = true
			}
		}
		for range 50 {
			from := rng.Uint64N(n)
			to := from + rng.Uint64N(n-from+1)
			want := to
			for i := from; i < to; i++ {
				if ref[i] {
					want = i
					break
				}
			}
			if got := firstSet(b, from, to); got != want {
				t.Fatalf("firstSet(%d, %d) = %d, want %d", from, to, got, want)
			}
		}
	}
}
