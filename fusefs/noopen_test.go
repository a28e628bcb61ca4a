package fusefs

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestMountFilesOpenWithoutRequests: reading files costs no OPEN or
// RELEASE request (after the first OPEN, answered ENOSYS), and files
// opened that way still read right: disk images (which borrow a reader
// per read), their holes and data, info.json, and an image of a point
// deleted meanwhile refuses its reads.
func TestMountFilesOpenWithoutRequests(t *testing.T) {
	testutil.RequireFUSE(t)
	ctx := context.Background()
	repo, pts := testRepo(t, 2)
	trace := &requestLog{}
	logger := slog.New(slog.NewTextHandler(trace, &slog.HandlerOptions{Level: slog.LevelDebug}))
	mnt := t.TempDir()
	srv, err := Mount(ctx, repo, mnt, Options{Logger: logger, Debug: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Unmount(true, 5*time.Second) })
	walkTree(t, mnt)
	trace.ops()

	for i, p := range pts {
		img := filepath.Join(mnt, "vm", p.ID, "disks", "disk0.img")
		for range 2 {
			got, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			if want := bytes.Repeat([]byte{byte(i + 1)}, 256<<10); !bytes.Equal(got, want) {
				t.Fatalf("%s: wrong bytes", img)
			}
		}
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		if off, err := unix.Seek(int(f.Fd()), 0, unix.SEEK_HOLE); err != nil || off != 256<<10 {
			t.Errorf("%s: SEEK_HOLE from 0 = %d, %v; want %d", img, off, err, 256<<10)
		}
		f.Close()
		if data, err := os.ReadFile(filepath.Join(mnt, "vm", p.ID, "info.json")); err != nil || !bytes.Contains(data, []byte(p.ID)) {
			t.Errorf("info.json of %s: %v %s", p.ID, err, data)
		}
	}
	ops := trace.ops()
	if ops["OPEN"] > 1 || ops["RELEASE"] != 0 {
		t.Errorf("reading 8 files sent %d OPEN and %d RELEASE requests, want at most 1 and 0 (all: %v)", ops["OPEN"], ops["RELEASE"], ops)
	}

	// An image opened before its point is deleted refuses later reads
	// (EIO), and so does a fresh open.
	victim := pts[0]
	img := filepath.Join(mnt, "vm", victim.ID, "disks", "disk0.img")
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := repo.Forget(ctx, "vm", []string{victim.ID}, false); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	eventually(t, "read of a deleted point refused", func() error {
		// O_DIRECT-like: the page cache may hold the bytes read before;
		// read past what was read, with the cache dropped for this file.
		unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		if _, err := f.ReadAt(buf, 128<<10); err == nil {
			return errString("read of a deleted point returned bytes")
		}
		return nil
	})
}

type errString string

func (e errString) Error() string { return string(e) }
