package fusefs

import (
	"bytes"
	"context"
	"log/slog"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// stallingSource answers its first Attachment only when the request is
// interrupted (or after 20 s): a slow remote store that the reader's
// signal catches mid-request.
type stallingSource struct {
	repoSource
	calls       atomic.Int32
	interrupted atomic.Int32
}

func (s *stallingSource) Attachment(ctx context.Context, p blockmap.Point, name string) ([]byte, error) {
	if s.calls.Add(1) == 1 {
		select {
		case <-ctx.Done():
			s.interrupted.Add(1)
			return nil, ctx.Err()
		case <-time.After(20 * time.Second):
		}
	}
	return s.repoSource.Attachment(ctx, p, name)
}

// TestInterruptedLookupIsRetried: a signal to a process waiting for a
// slow request makes the kernel interrupt it; the mount must answer
// EINTR (the reader's libc or runtime retries) rather than EIO, which
// the reader takes for damaged data. A CI run of TestRemoteAttachments
// once read vm/config.json through mount --remote as EIO: Go's runtime
// signals its own threads (preemption), and the attachment's GET was
// cancelled with the request.
func TestInterruptedLookupIsRetried(t *testing.T) {
	testutil.RequireFUSE(t)
	testutil.RequireTools(t, "python3")
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	if err := blockmap.Init(ctx, dir, blockmap.InitOptions{BlockSize: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	repo, err := blockmap.Open(ctx, dir, blockmap.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	s, err := repo.BeginPoint(ctx, "vm", blockmap.PointOptions{Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.AddDisk(ctx, "disk0", 256<<10, blockmap.DiskOptions{Full: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(bytes.Repeat([]byte{1}, 256<<10), 0); err != nil {
		t.Fatal(err)
	}
	want := []byte(`{"version":1,"name":"vm"}`)
	if err := s.Attach("vm/config.json", want); err != nil {
		t.Fatal(err)
	}
	p, err := s.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	src := &stallingSource{repoSource: repoSource{repo}}
	mnt := t.TempDir()
	srv, err := MountSource(ctx, src, mnt, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Unmount(true, 5*time.Second)

	// A reader with a signal handler, as most programs have: SIGALRM
	// every 100 ms while it opens and reads the file (Python retries
	// EINTR, PEP 475; it raises any other error).
	script := `import signal, sys
signal.signal(signal.SIGALRM, lambda *a: None)
signal.setitimer(signal.ITIMER_REAL, 0.1, 0.1)
with open(sys.argv[1], "rb") as f:
    sys.stdout.buffer.write(f.read())
`
	path := filepath.Join(mnt, "vm", p.ID, "vm", "config.json")
	cmd := exec.Command("python3", "-c", script, path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	got, err := cmd.Output()
	if err != nil {
		t.Fatalf("reading %s under signals: %v: %s", path, err, stderr.String())
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %q, want %q", got, want)
	}
	if src.interrupted.Load() == 0 {
		t.Fatalf("the first attachment request was never interrupted (%d calls): the test proved nothing", src.calls.Load())
	}
}
