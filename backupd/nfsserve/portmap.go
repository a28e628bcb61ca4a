package nfsserve

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
)

// RPC program numbers the portmapper answers for.
const (
	progPortmap = 100000
	progNFS     = 100003
	progMount   = 100005
	ipProtoTCP  = 6
)

// rpcDispatch answers one call: the accept_stat and the result's body
// (after the accept_stat). Programs it does not serve answer 1
// (PROG_UNAVAIL), versions 2 (PROG_MISMATCH, body low and high version).
type rpcDispatch func(prog, vers, proc uint32, args *xdrReader) (uint32, []byte)

// serveRPC answers ONC RPC calls (RFC 5531) on a TCP listener (record
// marking) and a UDP socket (either may be nil) until ctx ends; it
// returns nil then. Clients whose address is not in allow (Loopback when
// empty) are disconnected (TCP) or not answered (UDP).
func serveRPC(ctx context.Context, ln net.Listener, pc net.PacketConn, d rpcDispatch, allow *AllowList, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	go func() {
		<-ctx.Done()
		if ln != nil {
			ln.Close()
		}
		if pc != nil {
			pc.Close()
		}
	}()
	var conns atomic.Int64 // TCP connections open (at most MaxConns)
	errc := make(chan error, 2)
	if pc != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 9000)
			for {
				n, addr, err := pc.ReadFrom(buf)
				if err != nil {
					errc <- err
					return
				}
				if !allow.Allows(addr) {
					log.Debug("rpc: ignored a UDP call from a client not in the allow list", "client", addr.String())
					continue
				}
				if out := rpcReply(buf[:n], d); out != nil {
					_, _ = pc.WriteTo(out, addr)
				}
			}
		}()
	}
	if ln != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					errc <- err
					return
				}
				if !allow.Allows(c.RemoteAddr()) {
					log.Warn("rpc: refused a client not in the allow list (--allow)", "client", c.RemoteAddr().String())
					c.Close()
					continue
				}
				if conns.Add(1) > MaxConns {
					conns.Add(-1)
					log.Warn("rpc: refused a client: too many connections", "client", c.RemoteAddr().String(), "max", MaxConns)
					c.Close()
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer conns.Add(-1)
					stop := context.AfterFunc(ctx, func() { c.Close() })
					defer stop()
					defer c.Close()
					if err := serveRPCConn(c, d); err != nil && !errors.Is(err, io.EOF) && ctx.Err() == nil {
						log.Debug("rpc client ended", "client", c.RemoteAddr().String(), "reason", err)
					}
				}()
			}
		}()
	}
	if ln == nil && pc == nil {
		return nil
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
}

// serveRPCConn answers the calls of one TCP client.
func serveRPCConn(c net.Conn, d rpcDispatch) error {
	r := bufio.NewReader(c)
	for {
		var msg []byte
		for {
			var hdr [4]byte
			if _, err := io.ReadFull(r, hdr[:]); err != nil {
				return err
			}
			v := binary.BigEndian.Uint32(hdr[:])
			n := v & 0x7fffffff
			if n > 1<<16 || len(msg)+int(n) > 1<<16 {
				return fmt.Errorf("rpc record of %d bytes", n)
			}
			frag := make([]byte, n)
			if _, err := io.ReadFull(r, frag); err != nil {
				return err
			}
			msg = append(msg, frag...)
			if v&0x80000000 != 0 {
				break
			}
		}
		out := rpcReply(msg, d)
		if out == nil {
			continue
		}
		rec := binary.BigEndian.AppendUint32(nil, 0x80000000|uint32(len(out)))
		if _, err := c.Write(append(rec, out...)); err != nil {
			return err
		}
	}
}

// rpcReply answers one RPC call message (nil: not a call, ignored).
func rpcReply(msg []byte, d rpcDispatch) []byte {
	rd := xdrReader{b: msg}
	xid, mtype, rpcvers := rd.u32(), rd.u32(), rd.u32()
	prog, vers, proc := rd.u32(), rd.u32(), rd.u32()
	rd.opaqueAuth() // credential
	rd.opaqueAuth() // verifier
	if rd.bad || mtype != 0 {
		return nil
	}
	out := binary.BigEndian.AppendUint32(nil, xid)
	out = binary.BigEndian.AppendUint32(out, 1) // REPLY
	if rpcvers != 2 {
		out = binary.BigEndian.AppendUint32(out, 1) // MSG_DENIED
		out = binary.BigEndian.AppendUint32(out, 0) // RPC_MISMATCH
		out = binary.BigEndian.AppendUint32(out, 2)
		return binary.BigEndian.AppendUint32(out, 2)
	}
	out = binary.BigEndian.AppendUint32(out, 0) // MSG_ACCEPTED
	out = binary.BigEndian.AppendUint64(out, 0) // verifier AUTH_NONE, empty
	stat, body := d(prog, vers, proc, &rd)
	out = binary.BigEndian.AppendUint32(out, stat)
	return append(out, body...)
}

// u32s encodes XDR words.
func u32s(v ...uint32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.BigEndian.AppendUint32(b, x)
	}
	return b
}

// Portmapper answers the ONC RPC portmapper (program 100000, version 2:
// NULL, GETPORT, DUMP) over TCP and UDP for one export: NFS version 3 at
// NFSPort and MOUNT version 3 at MountPort, both TCP. ESXi and libnfs
// (qemu's nfs:// driver) ask the portmapper on port 111 where MOUNT is,
// so an export on a host without rpcbind needs one.
type Portmapper struct {
	// NFSPort and MountPort are the TCP ports of the export's NFS and
	// MOUNT servers.
	NFSPort, MountPort int
	// Allow is who may ask (nil: Loopback).
	Allow *AllowList
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// Serve answers on a TCP listener and a UDP socket (either may be nil)
// until ctx ends; it returns nil then.
func (pm *Portmapper) Serve(ctx context.Context, ln net.Listener, pc net.PacketConn) error {
	if err := serveRPC(ctx, ln, pc, pm.dispatch, pm.Allow, pm.Logger); err != nil {
		return fmt.Errorf("portmapper: %w", err)
	}
	return nil
}

func (pm *Portmapper) dispatch(prog, vers, proc uint32, rd *xdrReader) (uint32, []byte) {
	switch {
	case prog != progPortmap:
		return 1, nil // PROG_UNAVAIL
	case vers != 2:
		return 2, u32s(2, 2) // PROG_MISMATCH
	}
	switch proc {
	case 0: // NULL
		return 0, nil
	case 3: // GETPORT(prog, vers, prot, port)
		p, v, prot := rd.u32(), rd.u32(), rd.u32()
		if rd.bad {
			return 4, nil // GARBAGE_ARGS
		}
		port := uint32(0)
		for _, m := range pm.mappings() {
			if m[0] == p && m[1] == v && m[2] == prot {
				port = m[3]
			}
		}
		return 0, u32s(port)
	case 4: // DUMP
		var out []byte
		for _, m := range pm.mappings() {
			out = append(out, u32s(1, m[0], m[1], m[2], m[3])...)
		}
		return 0, append(out, u32s(0)...)
	default:
		return 3, nil // PROC_UNAVAIL
	}
}

// mappings are (program, version, protocol, port).
func (pm *Portmapper) mappings() [][4]uint32 {
	return [][4]uint32{
		{progPortmap, 2, ipProtoTCP, 111},
		{progNFS, 3, ipProtoTCP, uint32(pm.NFSPort)},
		{progMount, 3, ipProtoTCP, uint32(pm.MountPort)},
	}
}

// xdrReader reads big-endian XDR words; bad is set on a short message.
type xdrReader struct {
	b   []byte
	bad bool
}

func (r *xdrReader) u32() uint32 {
	if len(r.b) < 4 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *xdrReader) opaqueAuth() {
	r.u32() // flavor
	n := r.u32()
	if n > 400 { // RFC 5531: an opaque_auth body has at most 400 bytes
		r.bad = true
		return
	}
	n = (n + 3) &^ 3
	if r.bad || uint32(len(r.b)) < n {
		r.bad = true
		return
	}
	r.b = r.b[n:]
}

// opaque reads an XDR variable-length opaque (at most max bytes).
func (r *xdrReader) opaque(max uint32) []byte {
	n := r.u32()
	if r.bad || n > max || uint32(len(r.b)) < (n+3)&^3 {
		r.bad = true
		return nil
	}
	v := r.b[:n]
	r.b = r.b[(n+3)&^3:]
	return v
}

// xdrOpaque encodes a variable-length opaque or string.
func xdrOpaque(b []byte) []byte {
	out := u32s(uint32(len(b)))
	out = append(out, b...)
	for len(out)%4 != 0 {
		out = append(out, 0)
	}
	return out
}
