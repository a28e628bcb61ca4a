package backupd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultNBDCommand serves a snapshot disk with nbdkit's VDDK plugin (the
// production default; needs VMware's VDDK library on the appliance).
const DefaultNBDCommand = "nbdkit -t 1 -U {socket} -f --readonly vddk server={server} user={user} password=+{password_file} thumbprint={thumbprint} vm=moref={vm_moref} snapshot={snapshot_moref} file={disk_file}"

// Template placeholders, replaced in each whitespace-separated word of an
// NBD command (no shell is involved, so values need no quoting).
var placeholders = []string{"socket", "server", "user", "password_file", "thumbprint", "vm_moref", "snapshot_moref", "disk_file", "disk_local_path", "vm", "disk"}

// expandTemplate splits a command template into words and fills in the
// placeholders; values are computed only when a word uses them. An unknown
// {placeholder} is an error. Values are inserted as they are and never
// scanned again, so a path such as /vmfs/web{1}/web-flat.vmdk stays intact.
func expandTemplate(tmpl string, value func(name string) (string, error)) ([]string, error) {
	words := strings.Fields(tmpl)
	if len(words) == 0 {
		return nil, errors.New("empty NBD command")
	}
	for i, w := range words {
		var out strings.Builder
		rest := w
		for {
			start := strings.IndexByte(rest, '{')
			if start < 0 {
				out.WriteString(rest)
				break
			}
			end := strings.IndexByte(rest[start:], '}')
			if end < 0 {
				return nil, fmt.Errorf("NBD command word %q: unclosed {", w)
			}
			name := rest[start+1 : start+end]
			if !slices.Contains(placeholders, name) {
				return nil, fmt.Errorf("NBD command: unknown placeholder {%s} (known: {%s})", name, strings.Join(placeholders, "} {"))
			}
			v, err := value(name)
			if err != nil {
				return nil, fmt.Errorf("NBD command {%s}: %w", name, err)
			}
			out.WriteString(rest[:start])
			out.WriteString(v)
			rest = rest[start+end+1:]
		}
		words[i] = out.String()
	}
	return words, nil
}

// nbdServer is a running NBD server process.
type nbdServer struct {
	cmd    *exec.Cmd
	output *boundedBuffer
	exited chan struct{}
	once   sync.Once
}

// startNBDServer runs the command (its own process group, killed if cairn
// dies) and waits until socket appears.
func startNBDServer(ctx context.Context, args []string, socket string, timeout time.Duration) (*nbdServer, error) {
	cmd := exec.Command(args[0], args[1:]...)
	out := &boundedBuffer{max: 8 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = childEnv(os.Environ()) // no vCenter password or other secret in the server's environment
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start NBD server %s: %w", args[0], err)
	}
	s := &nbdServer{cmd: cmd, output: out, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.exited) }()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	// Poll every millisecond for the first 100 ms (servers usually listen
	// within a few ms, and a doubling backoff would notice a socket made
	// at 9 ms only at 15; a quick rollback's whole copy can take less
	// than one 20 ms tick), then back off to 20 ms.
	wait := time.Millisecond
	tick := time.NewTimer(wait)
	defer tick.Stop()
	fastUntil := time.Now().Add(100 * time.Millisecond)
	for {
		if _, err := os.Stat(socket); err == nil {
			return s, nil
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("NBD server %s exited before serving (%s): %s", filepath.Base(args[0]), cmd.ProcessState, strings.TrimSpace(out.String()))
		case <-deadline.C:
			s.stop()
			return nil, fmt.Errorf("NBD server %s did not create its socket within %s: %s", filepath.Base(args[0]), timeout, strings.TrimSpace(out.String()))
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-tick.C:
			if time.Now().After(fastUntil) {
				wait = min(2*wait, 20*time.Millisecond)
			}
			tick.Reset(wait)
		}
	}
}

// stop terminates the server (SIGTERM, then SIGKILL) and waits for it.
func (s *nbdServer) stop() {
	s.once.Do(func() {
		pgid := s.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-s.exited
		}
	})
}

// boundedBuffer keeps the first max bytes a process printed.
type boundedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (b *boundedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
