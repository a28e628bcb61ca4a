package boot

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// qmp is a minimal QMP client: one command at a time.
type qmp struct {
	mu sync.Mutex
	c  net.Conn
	r  *bufio.Reader
}

// dialQMP connects to qemu's QMP socket, waiting for it to appear, and
// negotiates capabilities.
func dialQMP(ctx context.Context, path string, exited <-chan struct{}) (*qmp, error) {
	var c net.Conn
	var err error
	for {
		var d net.Dialer
		c, err = d.DialContext(ctx, "unix", path)
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-exited:
			return nil, errors.New("qemu exited before its QMP socket answered")
		case <-time.After(50 * time.Millisecond):
		}
	}
	q := &qmp{c: c, r: bufio.NewReader(c)}
	if _, err := q.read(ctx); err != nil { // greeting
		c.Close()
		return nil, fmt.Errorf("QMP greeting: %w", err)
	}
	if _, err := q.Do(ctx, "qmp_capabilities", nil); err != nil {
		c.Close()
		return nil, err
	}
	return q, nil
}

type qmpMsg struct {
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string          `json:"event"`
	QMP   json.RawMessage `json:"QMP"`
}

func (q *qmp) read(ctx context.Context) (*qmpMsg, error) {
	if dl, ok := ctx.Deadline(); ok {
		q.c.SetReadDeadline(dl)
	} else {
		q.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	}
	line, err := q.r.ReadBytes('\n')
	if err != nil {
		return nil, err
	}
	var m qmpMsg
	if err := json.Unmarshal(line, &m); err != nil {
		return nil, fmt.Errorf("QMP: %w: %q", err, line)
	}
	return &m, nil
}

// Do runs one command and returns its result; events are skipped.
func (q *qmp) Do(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, _ := json.Marshal(req)
	q.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := q.c.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("QMP %s: %w", cmd, err)
	}
	for {
		m, err := q.read(ctx)
		if err != nil {
			return nil, fmt.Errorf("QMP %s: %w", cmd, err)
		}
		if m.Event != "" {
			continue
		}
		if m.Error != nil {
			return nil, fmt.Errorf("QMP %s: %s: %s", cmd, m.Error.Class, m.Error.Desc)
		}
		return m.Return, nil
	}
}

func (q *qmp) Close() error { return q.c.Close() }
