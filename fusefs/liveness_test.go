package fusefs

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestReadNeverWaitsForWriter: while another process holds the index's
// exclusive lock (a committing writer, compacting for seconds) and the
// catalog changes, a read of an open disk image is answered from what the
// mount has and catalog.seq; it does not wait for the index. (Issue #13.)
func TestReadNeverWaitsForWriter(t *testing.T) {
	testutil.RequireFUSE(t)
	ctx := context.Background()
	repo, pts := testRepo(t, 2)
	mnt := t.TempDir()
	srv, err := Mount(ctx, repo, mnt, Options{Logger: slog.New(slog.DiscardHandler)})
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
	if _, err := f.ReadAt(buf, 0); err != nil || buf[0] != 1 {
		t.Fatalf("first read: %v %v", err, buf[:2])
	}
	// Take the exclusive index lock, as a committing writer does (the
	// mount's idle read-only handle lets go of its shared lock soon).
	lock, err := os.OpenFile(filepath.Join(repo.Dir(), "index.lock"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	deadline := time.Now().Add(30 * time.Second)
	for unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		if time.Now().After(deadline) {
			t.Fatal("cannot take the index lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	// The writer commits: catalog.seq moves on (by rename, as blockmap does).
	seq := filepath.Join(repo.Dir(), "catalog.seq")
	tmp := seq + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatUint(repo.CatalogSeq()+1, 10)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, seq); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		b := make([]byte, 4096)
		_, err := f.ReadAt(b, 8192)
		if err == nil && !bytes.Equal(b, bytes.Repeat([]byte{1}, 4096)) {
			err = os.ErrInvalid
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("read while a writer holds the index: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a read of an open image waited for the writer's index lock (20 s and counting)")
	}
}
