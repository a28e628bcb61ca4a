package nbd

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCloseSendsDisconnect(t *testing.T) {
	srv := nbdkit(t, "-v", "memory", "size=4M")
	c := dialT(t, srv.uri(""), testOptions())
	buf := make([]byte, 64<<10)
	if _, err := c.ReadAt(context.Background(), buf, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(srv.stderr.String(), "client sent NBD_CMD_DISC") {
		if time.Now().After(deadline) {
			t.Fatalf("server never saw NBD_CMD_DISC:\n%s", srv.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := c.ReadAt(context.Background(), buf, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after Close: %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
