package fusefs

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestReadOfForgottenPointLogged: a file of the mount held open while its
// point is forgotten gets EIO, and the mount says why in its log (reads
// on kernels that open files without OPEN used to fail with no log line,
// so an administrator saw a bare "Input/output error").
func TestReadOfForgottenPointLogged(t *testing.T) {
	testutil.RequireFUSE(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	if err := blockmap.Init(ctx, dir, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	writer, err := blockmap.Open(ctx, dir, blockmap.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	var pts []blockmap.Point
	for i := 0; i < 2; i++ {
		s, err := writer.BeginPoint(ctx, "vm", blockmap.PointOptions{Time: time.Date(2026, 1, 1, i, 0, 0, 0, time.UTC)})
		if err != nil {
			t.Fatal(err)
		}
		w, err := s.AddDisk(ctx, "disk0", 1<<20, blockmap.DiskOptions{Full: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.WriteAt([]byte(strings.Repeat("x", 1<<20)), 0); err != nil {
			t.Fatal(err)
		}
		p, err := s.Commit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pts = append(pts, p)
	}
	mountRepo, err := blockmap.Open(ctx, dir, blockmap.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer mountRepo.Close()
	logs := &requestLog{}
	mnt := t.TempDir()
	srv, err := Mount(ctx, mountRepo, mnt, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Unmount(true, 5*time.Second) })
	f, err := os.Open(filepath.Join(mnt, "vm", pts[0].ID, "disks", "disk0.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	if _, err := f.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := writer.Forget(ctx, "vm", []string{pts[0].ID}, false); err != nil {
		t.Fatal(err)
	}
	// The mount learns of the deletion through inotify: wait for the EIO.
	var rerr error
	for i := 0; i < 500; i++ {
		_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		if _, rerr = f.ReadAt(buf, 0); rerr != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !errors.Is(rerr, syscall.EIO) {
		t.Fatalf("read of the forgotten point: %v, want EIO", rerr)
	}
	logs.mu.Lock()
	logged := logs.buf.String()
	logs.mu.Unlock()
	if !strings.Contains(logged, "deleted recovery point") || !strings.Contains(logged, pts[0].ID) {
		t.Fatalf("EIO of a forgotten point without a log line naming it:\n%s", logged)
	}
}
