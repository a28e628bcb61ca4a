package nbd

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"testing"
)

// Encoders of server messages for seeds.

func simpleReplyBytes(errno uint32, cookie uint64, data []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, magicSimple)
	b = binary.BigEndian.AppendUint32(b, errno)
	b = binary.BigEndian.AppendUint64(b, cookie)
	return append(b, data...)
}

func chunkBytes(flags, typ uint16, cookie uint64, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, magicStructure)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, cookie)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func optReplyBytes(opt, typ uint32, data []byte) []byte {
	return cat(be64(magicOptReply), be32(opt), be32(typ), be32(uint32(len(data))), data)
}

// fuzzConn is a connection whose server side is data, with a 4 KiB read
// (cookie 1) and a block status request (cookie 2, context 1) pending.
func fuzzConn(data []byte) (*conn, *request, *request) {
	c := newConn(nil, nil, ExportInfo{StructuredReplies: true}, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	c.r = bufio.NewReader(bytes.NewReader(data))
	rd := newRequest(cmdRead, 4096, 4096)
	rd.buf = make([]byte, 4096)
	rd.cookie = 1
	bs := newRequest(cmdBlockStatus, 0, 1<<20)
	bs.cookie, bs.ctxID = 2, 1
	c.pending[1], c.pending[2] = rd, bs
	return c, rd, bs
}

// parseFuzzReplies feeds in to a connection made by fuzzConn, its read
// buffer filled with sentinel, and returns the pending requests.
func parseFuzzReplies(in []byte, sentinel byte) (rd, bs *request) {
	c, rd, bs := fuzzConn(in)
	for i := range rd.buf {
		rd.buf[i] = sentinel
	}
	for i := 0; i < 64; i++ {
		if err := c.readReply(); err != nil {
			break
		}
	}
	return rd, bs
}

// requestDone reports whether r has completed.
func requestDone(r *request) bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func FuzzReplyParsing(f *testing.F) {
	data := bytes.Repeat([]byte{0xab}, 4096)
	f.Add(simpleReplyBytes(0, 1, data))
	f.Add(simpleReplyBytes(EIO, 1, nil))
	f.Add(cat(
		chunkBytes(0, replyTypeOffsetData, 1, cat(be64(4096), data[:1024])),
		chunkBytes(replyFlagDone, replyTypeOffsetHole, 1, cat(be64(5120), be32(3072)))))
	f.Add(cat(
		chunkBytes(0, replyTypeBlockStatus, 2, cat(be32(1), be32(65536), be32(0), be32(983040), be32(3))),
		chunkBytes(0, replyTypeBlockStatus, 2, cat(be32(7), be32(1<<20), be32(1))),
		chunkBytes(replyFlagDone, replyTypeNone, 2, nil)))
	f.Add(chunkBytes(replyFlagDone, replyTypeError, 1, cat(be32(EIO), be16(4), []byte("oops"))))
	f.Add(chunkBytes(replyFlagDone, replyTypeErrorOffset, 1, cat(be32(EIO), be16(0), be64(4100))))
	f.Add(chunkBytes(replyFlagDone, replyTypeOffsetData, 1, cat(be64(0), data)))
	// Two chunks for the first half (a protocol error), then chunks out
	// of order that cover the read.
	f.Add(cat(
		chunkBytes(0, replyTypeOffsetData, 1, cat(be64(4096), data[:2048])),
		chunkBytes(replyFlagDone, replyTypeOffsetData, 1, cat(be64(4096), data[:2048]))))
	f.Add(cat(
		chunkBytes(0, replyTypeOffsetData, 1, cat(be64(6144), data[:2048])),
		chunkBytes(0, replyTypeOffsetHole, 1, cat(be64(4096), be32(1024))),
		chunkBytes(replyFlagDone, replyTypeOffsetData, 1, cat(be64(5120), data[:1024]))))
	f.Add([]byte{0x66, 0x8e, 0x33, 0xef})
	f.Fuzz(func(t *testing.T, in []byte) {
		// Parse twice, the read buffer first filled with one sentinel
		// and then another: a byte that some chunk wrote is the same
		// in both runs, one that none wrote keeps its sentinel. This
		// does not rely on the client's own count of delivered bytes.
		rd, bs := parseFuzzReplies(in, 0x5a)
		rd2, _ := parseFuzzReplies(in, 0xa5)
		if requestDone(rd) && rd.err == nil {
			if !requestDone(rd2) || rd2.err != nil {
				t.Fatalf("read succeeded once and then gave %v", rd2.err)
			}
			for i := range rd.buf {
				if rd.buf[i] != rd2.buf[i] {
					t.Fatalf("read completed without error but byte %d was never written", i)
				}
			}
		}
		for _, r := range []*request{rd, bs} {
			if !requestDone(r) || r.err != nil {
				continue
			}
			if r.cmd == cmdRead && r.covered != uint64(r.length) {
				t.Fatalf("read completed with %d of %d bytes and no error", r.covered, r.length)
			}
			if r.cmd == cmdBlockStatus {
				if len(r.extents) == 0 || r.extents[0].Offset != int64(r.off) {
					t.Fatalf("block status completed with extents %v", r.extents)
				}
			}
		}
	})
}

// fakeStream is a server that says in and swallows what the client sends.
type fakeStream struct{ io.Reader }

func (fakeStream) Write(p []byte) (int, error) { return len(p), nil }

// recordStream is a server that says Reader and records what it is sent.
type recordStream struct {
	io.Reader
	sent bytes.Buffer
}

func (r *recordStream) Write(p []byte) (int, error) { return r.sent.Write(p) }

func FuzzHandshake(f *testing.F) {
	greeting := cat(be64(magicNBD), be64(magicOption), be16(flagFixedNewstyle|flagNoZeroes))
	info := cat(be16(infoExport), be64(1<<30), be16(FlagHasFlags|FlagReadOnly|FlagCanMultiConn))
	bsize := cat(be16(infoBlockSize), be32(512), be32(4096), be32(1<<20))
	f.Add(cat(greeting,
		optReplyBytes(optStructuredRepl, repAck, nil),
		optReplyBytes(optSetMetaContext, repMetaContext, cat(be32(1), []byte(ContextBaseAllocation))),
		optReplyBytes(optSetMetaContext, repAck, nil),
		optReplyBytes(optGo, repInfo, bsize),
		optReplyBytes(optGo, repInfo, info),
		optReplyBytes(optGo, repAck, nil)))
	f.Add(cat(greeting,
		optReplyBytes(optStructuredRepl, repErrUnsup, nil),
		optReplyBytes(optGo, repErrUnsup, []byte("no go")),
		be64(1<<20), be16(1)))
	f.Add(cat(greeting, optReplyBytes(optStructuredRepl, repErrTLSReqd, []byte("tls please"))))
	f.Add(cat(be64(magicNBD), be64(magicOption), be16(0), be64(1<<20), be16(3), make([]byte, 124)))
	f.Add(cat(be64(magicNBD), be64(magicOldstyle), be64(1<<20), be32(3), make([]byte, 124)))
	f.Fuzz(func(t *testing.T, in []byte) {
		_, info, err := negotiate(fakeStream{bytes.NewReader(in)}, handshakeConfig{
			export: "disk", structured: true, contexts: []string{ContextBaseAllocation},
		})
		if err != nil {
			return
		}
		bs := info.BlockSize
		if info.Size < 0 || !powerOfTwo(bs.Min) || bs.Max < bs.Min {
			t.Fatalf("accepted bad export info %+v", info)
		}
		if requestSize(2<<20, bs)%bs.Min != 0 {
			t.Fatalf("request size not aligned for %+v", bs)
		}
	})
}

// TestSeedsParse checks that the well-formed seeds parse as intended.
func TestSeedsParse(t *testing.T) {
	data := bytes.Repeat([]byte{0xab}, 1024)
	c, rd, _ := fuzzConn(cat(
		chunkBytes(0, replyTypeOffsetData, 1, cat(be64(4096), data)),
		chunkBytes(0, replyTypeErrorOffset, 1, cat(be32(EIO), be16(3), []byte("bad"), be64(6000))),
		chunkBytes(replyFlagDone, replyTypeOffsetHole, 1, cat(be64(5120), be32(3072)))))
	for i := 0; i < 3; i++ {
		if err := c.readReply(); err != nil {
			t.Fatal(err)
		}
	}
	se, ok := rd.err.(*ServerError)
	if !ok || se.Errno != EIO || se.Offset != 6000 || se.Message != "bad" {
		t.Fatalf("error chunk parsed as %#v", rd.err)
	}
	if !bytes.Equal(rd.buf[:1024], data) || rd.covered != 4096 {
		t.Fatalf("data chunk not delivered (covered %d)", rd.covered)
	}
	// A fixed newstyle server without NBD_OPT_GO or structured replies:
	// the client falls back to NBD_OPT_EXPORT_NAME (no zero padding).
	greeting := cat(be64(magicNBD), be64(magicOption), be16(flagFixedNewstyle|flagNoZeroes))
	rec := &recordStream{Reader: bytes.NewReader(cat(greeting,
		optReplyBytes(optStructuredRepl, repErrUnsup, nil),
		optReplyBytes(optGo, repErrUnsup, nil),
		be64(3<<20), be16(FlagHasFlags|FlagReadOnly)))}
	_, info, err := negotiate(rec, handshakeConfig{export: "vm-disk", structured: true, contexts: []string{ContextBaseAllocation}})
	if err != nil || info.Size != 3<<20 || info.Flags != FlagHasFlags|FlagReadOnly || info.StructuredReplies || info.Name != "vm-disk" {
		t.Fatalf("fallback to NBD_OPT_EXPORT_NAME: %+v %v", info, err)
	}
	wantSent := cat(be32(clientFlagFixedNewstyle|clientFlagNoZeroes),
		be64(magicOption), be32(optStructuredRepl), be32(0),
		be64(magicOption), be32(optGo), be32(4+7+2+2), be32(7), []byte("vm-disk"), be16(1), be16(infoBlockSize),
		be64(magicOption), be32(optExportName), be32(7), []byte("vm-disk"))
	if !bytes.Equal(rec.sent.Bytes(), wantSent) {
		t.Fatalf("client sent\n%x\nwant\n%x", rec.sent.Bytes(), wantSent)
	}

	var h [requestHeaderLen]byte
	putRequest(h[:], 0, cmdBlockStatus, 0x1122, 1<<20, 4096)
	if !bytes.Equal(h[:], cat(be32(0x25609513), be16(0), be16(7), be64(0x1122), be64(1<<20), be32(4096))) {
		t.Fatalf("request header %x", h)
	}

	_, info, err = negotiate(fakeStream{bytes.NewReader(cat(be64(magicNBD), be64(magicOldstyle), be64(1<<20), be32(3), make([]byte, 124)))}, handshakeConfig{})
	if err != nil || info.Size != 1<<20 || info.Flags != 3 || info.Handshake != "oldstyle" {
		t.Fatalf("oldstyle greeting: %+v %v", info, err)
	}
}
