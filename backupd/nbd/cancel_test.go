package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

// pipeConn is a started connection over an in-memory pipe; the test plays
// the server on the other end.
func pipeConn(t *testing.T) (*conn, net.Conn) {
	t.Helper()
	client, server := net.Pipe()
	c := newConn(client, client, ExportInfo{StructuredReplies: true, Size: 1 << 20}, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	c.start()
	t.Cleanup(func() { c.abort(ErrClosed); server.Close(); <-c.dead })
	return c, server
}

// readRequest reads one request header from the client and returns its cookie.
func readRequest(t *testing.T, server net.Conn) uint64 {
	t.Helper()
	h := make([]byte, requestHeaderLen)
	if _, err := io.ReadFull(server, h); err != nil {
		t.Fatalf("server: read request: %v", err)
	}
	return binary.BigEndian.Uint64(h[8:16])
}

// TestReplyReadIntoBuffer proves the payload lands in the caller's buffer
// (read there directly, with no scratch copy) for a reply in two chunks.
func TestReplyReadIntoBuffer(t *testing.T) {
	c, server := pipeConn(t)
	req := newRequest(cmdRead, 8192, 1<<20)
	req.buf = make([]byte, 1<<20)
	want := bytes.Repeat([]byte("0123456789abcdef"), (1<<20)/16)
	errc := make(chan error, 1)
	go func() { errc <- c.do(context.Background(), req) }()
	cookie := readRequest(t, server)
	half := len(want) / 2
	go server.Write(cat(
		chunkBytes(0, replyTypeOffsetData, cookie, cat(be64(8192), want[:half])),
		chunkBytes(replyFlagDone, replyTypeOffsetData, cookie, cat(be64(8192+uint64(half)), want[half:]))))
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(req.buf, want) {
		t.Fatal("payload not delivered into the request's buffer")
	}
}

// TestCancelWhileReplyArrives cancels a read whose payload stopped halfway
// while the connection's reader was filling the caller's buffer: the call
// returns the cancellation (it does not wait for a server that may never
// send the rest), the connection is broken so the reader lets go of the
// buffer, and the buffer is not written after the call returned.
func TestCancelWhileReplyArrives(t *testing.T) {
	c, server := pipeConn(t)
	ctx, cancel := context.WithCancel(context.Background())
	req := newRequest(cmdRead, 0, 4096)
	req.buf = make([]byte, 4096)
	errc := make(chan error, 1)
	go func() { errc <- c.do(ctx, req) }()
	cookie := readRequest(t, server)
	chunk := chunkBytes(replyFlagDone, replyTypeOffsetData, cookie, cat(be64(0), bytes.Repeat([]byte{1}, 4096)))
	if _, err := server.Write(chunk[:len(chunk)-1000]); err != nil { // header and part of the payload
		t.Fatal(err)
	}
	// Wait until the reader holds the buffer, waiting for the rest.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if !req.mu.TryLock() {
			break
		}
		req.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("the reader never started on the payload")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled read returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a cancelled read waited for a stalled reply")
	}
	snapshot := bytes.Clone(req.buf)
	<-c.dead // the connection was broken to free the buffer
	if c.alive() {
		t.Fatal("connection still alive after abandoning a half-read reply")
	}
	if !bytes.Equal(req.buf, snapshot) {
		t.Fatal("buffer written after the call returned")
	}
}
