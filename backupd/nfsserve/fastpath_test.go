package nfsserve

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"
)

// rpcCallRecord is a record-marked NFSv3 call (AUTH_UNIX credential, as
// Linux and libnfs send) with args.
func rpcCallRecord(xid, proc uint32, args []byte) []byte {
	cred := u32s(0, 0, 0, 0, 0) // stamp, machine name "", uid, gid, no gids
	body := u32s(xid, 0, 2, progNFS, 3, proc, 1, uint32(len(cred)))
	body = append(body, cred...)
	body = append(body, u32s(0, 0)...)
	body = append(body, args...)
	return append(u32s(lastFragment|uint32(len(body))), body...)
}

func readArgs(fh []byte, off uint64, count uint32) []byte {
	a := xdrOpaque(fh)
	return append(a, u32s(uint32(off>>32), uint32(off), count)...)
}

func writeArgs(fh []byte, off uint64, data []byte) []byte {
	a := xdrOpaque(fh)
	a = append(a, u32s(uint32(off>>32), uint32(off), uint32(len(data)), 2)...)
	return append(a, xdrOpaque(data)...)
}

// testReply is one reply: its xid and the body after the accept_stat.
type testReply struct {
	xid    uint32
	accept uint32
	body   []byte
}

func readReply(t *testing.T, br *bufio.Reader) testReply {
	t.Helper()
	var rm [4]byte
	if _, err := io.ReadFull(br, rm[:]); err != nil {
		t.Fatalf("reading a reply: %v", err)
	}
	n := binary.BigEndian.Uint32(rm[:])
	if n&lastFragment == 0 {
		t.Fatalf("reply in more than one fragment")
	}
	b := make([]byte, n&^lastFragment)
	if _, err := io.ReadFull(br, b); err != nil {
		t.Fatalf("reading a reply: %v", err)
	}
	r := xdrReader{b: b}
	xid := r.u32()
	if r.u32() != 1 || r.u32() != 0 {
		t.Fatalf("reply %d is not an accepted reply", xid)
	}
	r.u32()
	r.opaque(400)
	acc := r.u32()
	if r.bad {
		t.Fatalf("reply %d is short", xid)
	}
	return testReply{xid: xid, accept: acc, body: r.b}
}

// readResult parses a READ3res: status, count, eof and data.
func readResult(t *testing.T, rep testReply) (status uint32, eof bool, data []byte) {
	t.Helper()
	r := xdrReader{b: rep.body}
	status = r.u32()
	if r.u32() == 1 { // post_op_attr
		if len(r.b) < 84 {
			t.Fatalf("reply %d: short attributes", rep.xid)
		}
		r.b = r.b[84:]
	}
	if status != 0 {
		return status, false, nil
	}
	count := r.u32()
	eof = r.u32() == 1
	data = r.opaque(1 << 30)
	if r.bad || uint32(len(data)) != count {
		t.Fatalf("reply %d: malformed READ result (count %d, %d bytes)", rep.xid, count, len(data))
	}
	return status, eof, data
}

// TestPipelinedCallsGetTheirOwnReplies sends many READs of both disks
// (aligned, unaligned, across the end, past it), WRITEs, NULLs and
// GETATTRs on one connection without waiting, and checks that every
// reply comes once, under its call's xid, with that call's bytes.
func TestPipelinedCallsGetTheirOwnReplies(t *testing.T) {
	disks, order := twoDisks()
	repo, p := point(t, disks, order...)
	e := openExport(t, repo, p, t.TempDir())
	defer e.Close()
	pt, _ := serveExport(t, e)
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", pt.nfs))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)

	want := map[string][]byte{}
	fhs := map[string][]byte{}
	for i, d := range e.Disks() {
		want[d.Flat] = bytes.Clone(disks[order[i]])
		fhs[d.Flat] = e.h.ToHandle(e.fs, []string{d.Flat})
	}
	flat0, flat1 := e.Disks()[0].Flat, e.Disks()[1].Flat

	// round 1: WRITEs in a hole and over data of disk0, pipelined
	rng := rand.New(rand.NewPCG(1, 2))
	writes := map[uint32]struct{}{}
	var batch []byte
	for i := range 8 {
		off := uint64(rng.IntN(64<<20 - 70000))
		data := make([]byte, 1+rng.IntN(65536))
		for j := range data {
			data[j] = byte(i*37 + j)
		}
		copy(want[flat0][off:], data)
		xid := 1000 + uint32(i)
		writes[xid] = struct{}{}
		batch = append(batch, rpcCallRecord(xid, procWrite, writeArgs(fhs[flat0], off, data))...)
	}
	go c.Write(batch)
	for range len(writes) {
		rep := readReply(t, br)
		if _, ok := writes[rep.xid]; !ok {
			t.Fatalf("reply with xid %d: not an outstanding WRITE", rep.xid)
		}
		delete(writes, rep.xid)
		if st := binary.BigEndian.Uint32(rep.body); rep.accept != 0 || st != 0 {
			t.Fatalf("WRITE %d: accept %d status %d", rep.xid, rep.accept, st)
		}
	}

	// round 2: READs of both disks among NULLs and GETATTRs
	type call struct {
		proc  uint32
		file  string
		off   uint64
		count uint32
	}
	calls := map[uint32]call{}
	batch = batch[:0]
	for i := range 200 {
		xid := rng.Uint32()
		for _, dup := calls[xid]; dup; _, dup = calls[xid] {
			xid = rng.Uint32()
		}
		var cl call
		switch i % 10 {
		case 3:
			cl = call{proc: 0}
		case 7:
			cl = call{proc: 1, file: flat1}
		default:
			cl = call{proc: procRead, file: []string{flat0, flat1}[i%2]}
			size := len(want[cl.file])
			switch i % 20 {
			case 2: // across the end
				cl.off, cl.count = uint64(size-1000), 5000
			case 4: // past the end
				cl.off, cl.count = uint64(size+4096), 4096
			case 6: // more than a READ answers, short of the end: short, not eof
				cl.off, cl.count = uint64(size-20<<20), 32<<20
			default:
				cl.off, cl.count = uint64(rng.IntN(size)), uint32(1+rng.IntN(1<<20))
			}
		}
		calls[xid] = cl
		var args []byte
		switch cl.proc {
		case procRead:
			args = readArgs(fhs[cl.file], cl.off, cl.count)
		case 1:
			args = xdrOpaque(fhs[cl.file])
		}
		batch = append(batch, rpcCallRecord(xid, cl.proc, args)...)
	}
	before := e.fastCalls.Load()
	go c.Write(batch)
	for range len(calls) {
		rep := readReply(t, br)
		cl, ok := calls[rep.xid]
		if !ok {
			t.Fatalf("reply with xid %d: not an outstanding call (or answered twice)", rep.xid)
		}
		delete(calls, rep.xid)
		if rep.accept != 0 {
			t.Fatalf("call %d (proc %d): accept_stat %d", rep.xid, cl.proc, rep.accept)
		}
		switch cl.proc {
		case 0:
			if len(rep.body) != 0 {
				t.Errorf("NULL %d: a body of %d bytes", rep.xid, len(rep.body))
			}
		case 1:
			if len(rep.body) < 4+84 || binary.BigEndian.Uint32(rep.body) != 0 {
				t.Errorf("GETATTR %d: bad reply", rep.xid)
			} else if size := binary.BigEndian.Uint64(rep.body[4+20:]); size != uint64(len(want[cl.file])) {
				t.Errorf("GETATTR %d: size %d, want %d", rep.xid, size, len(want[cl.file]))
			}
		case procRead:
			st, eof, data := readResult(t, rep)
			if st != 0 {
				t.Errorf("READ %d of %s at %d: status %d", rep.xid, cl.file, cl.off, st)
				continue
			}
			img := want[cl.file]
			end := min(cl.off+uint64(min(cl.count, fastMaxRead)), uint64(len(img)))
			var exp []byte
			if cl.off < uint64(len(img)) {
				exp = img[cl.off:end]
			}
			if !bytes.Equal(data, exp) {
				t.Errorf("READ %d of %s at %d (%d bytes): %d bytes, not the file's %d", rep.xid, cl.file, cl.off, cl.count, len(data), len(exp))
			}
			if wantEOF := end == uint64(len(img)); eof != wantEOF {
				t.Errorf("READ %d of %s at %d (%d bytes): eof %v, want %v", rep.xid, cl.file, cl.off, cl.count, eof, wantEOF)
			}
		}
	}
	if n := e.fastCalls.Load() - before; n != 160 {
		t.Errorf("the fast path answered %d READs, want 160", n)
	}
}

// TestMalformedRecordClosesTheConnection: a record go-nfs cannot read (a
// fragment that is not the last, a call shorter than its header, a reply)
// ends the connection instead of leaving it open and unread.
func TestMalformedRecordClosesTheConnection(t *testing.T) {
	disks, order := twoDisks()
	repo, p := point(t, disks, order...)
	e := openExport(t, repo, p, t.TempDir())
	defer e.Close()
	pt, _ := serveExport(t, e)
	good := rpcCallRecord(7, 0, nil)
	for name, rec := range map[string][]byte{
		"first fragment": append(u32s(uint32(len(good)-4)), good[4:]...),
		"short call":     append(u32s(lastFragment|8), u32s(9, 0)...),
		"a reply":        append(u32s(lastFragment|uint32(len(good)-4)), append(u32s(7, 1), good[12:]...)...),
		"auth too long":  append(u32s(lastFragment|uint32(len(good)-4)), append(u32s(7, 0, 2, progNFS, 3, 0, 1, 1<<20), good[36:]...)...),
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", pt.nfs))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// a good call first: the connection works
			c.Write(good)
			br := bufio.NewReader(c)
			if rep := readReply(t, br); rep.xid != 7 {
				t.Fatalf("NULL answered with xid %d", rep.xid)
			}
			c.Write(rec)
			c.SetReadDeadline(time.Now().Add(10 * time.Second)) // a guard against hanging, not a measure
			if n, err := br.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("after a malformed record: read %d bytes, %v; want the connection closed (EOF)", n, err)
			}
		})
	}
}
