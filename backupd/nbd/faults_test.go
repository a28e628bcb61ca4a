package nbd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestServerErrorSurfaced(t *testing.T) {
	for _, sr := range []string{"--sr", "--no-sr"} { // structured and simple error replies
		t.Run(sr, func(t *testing.T) { testServerErrorSurfaced(t, sr) })
	}
}

func testServerErrorSurfaced(t *testing.T, sr string) {
	args := []string{"--filter=error", "memory", "size=8M", "error-pread-rate=100%", "error=EIO"}
	if sr == "--no-sr" {
		args = append([]string{sr}, args...)
	}
	srv := nbdkit(t, args...)
	o := testOptions()
	o.Retries = 2
	o.MaxRequestSize = 1 << 20 // one request for the read below
	c := dialT(t, srv.uri(""), o)
	buf := make([]byte, 1<<20)
	_, err := c.ReadAt(context.Background(), buf, 2<<20)
	var se *ServerError
	if !errors.As(err, &se) || se.Errno != EIO {
		t.Fatalf("read: %v, want a ServerError EIO", err)
	}
	for _, s := range []string{"offset 2097152", "length 1048576", "EIO", "after 3 attempts"} {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("error %q does not mention %q", err, s)
		}
	}
}

func TestServerErrorsRetried(t *testing.T) {
	path := sparseImage(t, testImageSize, testSpans...)
	srv := nbdkit(t, "--filter=error", "file", path, "error-pread-rate=5%", "error=EIO")
	o := testOptions()
	o.MaxRequestSize = 64 << 10 // ~400 requests: some fail and are retried
	o.Retries = 10
	c := dialT(t, srv.uri(""), o)
	checkWholeRead(t, c, path)
	chunks := (testImageSize + int64(o.MaxRequestSize) - 1) / int64(o.MaxRequestSize)
	if st := c.Stats(); st.Retries == 0 || st.Requests != chunks+st.Retries {
		t.Fatalf("stats %+v: want retried requests", st)
	}
}

// pauseServer sends a command byte to nbdkit's pause filter and waits for
// its acknowledgement.
func pauseServer(t *testing.T, sock string, cmd byte) {
	t.Helper()
	pc, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.Write([]byte{cmd}); err != nil {
		t.Fatal(err)
	}
	_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b [1]byte
	if _, err := pc.Read(b[:]); err != nil {
		t.Fatalf("pause control %q: %v", cmd, err)
	}
}

// waitInFlight waits until the client has requests outstanding.
func waitInFlight(t *testing.T, c *Client) *conn {
	t.Helper()
	for i := 0; i < 1000; i++ {
		for _, s := range c.slots {
			if cn := s.get(); cn != nil {
				cn.mu.Lock()
				n := len(cn.pending)
				cn.mu.Unlock()
				if n > 0 {
					return cn
				}
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no request in flight")
	return nil
}

func TestStallTimeout(t *testing.T) {
	ctl := filepath.Join(t.TempDir(), "pause.sock")
	srv := nbdkit(t, "--filter=pause", "memory", "size=8M", "pause-control="+ctl)
	o := testOptions()
	o.StallTimeout = 500 * time.Millisecond
	o.Retries = 5
	c := dialT(t, srv.uri(""), o)
	pauseServer(t, ctl, 'p')
	buf := make([]byte, 128<<10) // one request
	_, err := c.ReadAt(context.Background(), buf, 0)
	if !errors.Is(err, ErrStalled) || !strings.Contains(err.Error(), "offset 0 length 131072") {
		t.Fatalf("read from a paused server: %v, want ErrStalled naming the range", err)
	}
	// Retries after a stall share one budget of half a stall timeout:
	// only the first attempt waits a whole stall timeout (before, each of
	// the 6 attempts did).
	if st := c.Stats(); st.Stalls != 1 {
		t.Fatalf("stats %+v: want 1 stall (the retries share a budget of half a stall timeout)", st)
	}
	pauseServer(t, ctl, 'r')
	if _, err := c.ReadAt(context.Background(), buf, 0); err != nil {
		t.Fatalf("read after the server resumed: %v", err)
	}
}

// TestServerKilledMidRead kills the server while reads are stuck in it and
// starts a new one on the same socket: the client reconnects and re-issues
// the reads.
func TestServerKilledMidRead(t *testing.T) {
	path := sparseImage(t, testImageSize, testSpans...)
	ctl := filepath.Join(t.TempDir(), "pause.sock")
	srv := nbdkit(t, "--filter=pause", "file", path, "pause-control="+ctl)
	o := testOptions()
	o.Retries = 50 // about 7 s of backoff: room for the restart on a busy machine
	o.MaxRetryBackoff = 200 * time.Millisecond
	c := dialT(t, srv.uri(""), o)
	pauseServer(t, ctl, 'p')

	type result struct {
		sum [32]byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		buf := make([]byte, c.Size())
		_, err := c.ReadAt(context.Background(), buf, 0)
		done <- result{sha256.Sum256(buf), err}
	}()
	old := waitInFlight(t, c)
	srv.stop()
	srv.args = []string{"nbdkit", "-t", "1", "-f", "-U", srv.sock, "file", path}
	srv.start()
	r := <-done
	if r.err != nil {
		t.Fatalf("read across a server restart: %v", r.err)
	}
	if r.sum != fileSHA(t, path) {
		t.Fatal("bytes read across the restart differ from the file")
	}
	if c.slots[0].get() == old || c.Stats().Reconnects == 0 {
		t.Fatalf("client kept the dead connection (stats %+v)", c.Stats())
	}

	// Without a server to come back to, reads fail cleanly.
	srv.stop()
	c.opts.Retries = 2
	_, err := c.ReadAt(context.Background(), make([]byte, 4096), 0)
	if err == nil || !strings.Contains(err.Error(), "offset 0 length 4096") {
		t.Fatalf("read with the server gone: %v, want an error naming the range", err)
	}
}

func TestMultiConn(t *testing.T) {
	path := sparseImage(t, testImageSize, testSpans...)
	srv := qemuNBD(t, "-r", "-e", "4", "-f", "raw", path)
	o := testOptions()
	o.Connections = 4
	o.MaxRequestSize = 256 << 10
	c := dialT(t, srv.uri(""), o)
	if !c.CanMultiConn() || c.Connections() != 4 || c.LiveConnections() != 4 {
		t.Fatalf("multi-conn %v, connections %d live %d, want 4", c.CanMultiConn(), c.Connections(), c.LiveConnections())
	}
	checkWholeRead(t, c, path)
	for i, s := range c.slots {
		if s.get().submitted.Load() == 0 {
			t.Fatalf("connection %d carried no request", i)
		}
	}

	// A server without multi-conn gets one connection.
	single := nbdkit(t, "--filter=multi-conn", "file", path, "multi-conn-mode=disable")
	c1 := dialT(t, single.uri(""), o)
	if c1.CanMultiConn() || c1.Connections() != 1 {
		t.Fatalf("without multi-conn: connections %d", c1.Connections())
	}
	checkWholeRead(t, c1, path)
}

// TestPipelining holds a paused server while one connection fills up with
// requests: the client keeps MaxInFlight requests outstanding at once and
// never more.
func TestPipelining(t *testing.T) {
	path := sparseImage(t, testImageSize, testSpans...)
	ctl := filepath.Join(t.TempDir(), "pause.sock")
	srv := nbdkit(t, "--filter=multi-conn", "--filter=pause", "file", path, "pause-control="+ctl, "multi-conn-mode=disable")
	o := testOptions()
	o.MaxInFlight = 8
	o.MaxRequestSize = 64 << 10
	c := dialT(t, srv.uri(""), o)
	pauseServer(t, ctl, 'p')
	done := make(chan error, 1)
	buf := make([]byte, 4<<20) // 64 requests
	go func() { _, err := c.ReadAt(context.Background(), buf, 0); done <- err }()
	cn := waitInFlight(t, c)
	for i := 0; ; i++ {
		cn.mu.Lock()
		n := len(cn.pending)
		cn.mu.Unlock()
		if n > 8 {
			t.Fatalf("%d requests in flight, MaxInFlight is 8", n)
		}
		if n == 8 {
			break
		}
		if i > 2000 {
			t.Fatalf("only %d requests in flight on the paused server", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	pauseServer(t, ctl, 'r')
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, src[:len(buf)]) {
		t.Fatal("pipelined read differs from the file")
	}
}
