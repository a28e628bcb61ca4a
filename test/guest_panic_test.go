package test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/fusefs"
	"github.com/cairnbackup/cairn/fusefs/guest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// poisonReader panics on every read while armed, the way a parser bug
// deep inside a filesystem reader would: the panic unwinds through the
// reader (which has no recover of its own) up to the reader boundary,
// partinfo.Safe.
type poisonReader struct {
	r     io.ReaderAt
	armed *atomic.Bool
}

func (p poisonReader) ReadAt(b []byte, off int64) (int, error) {
	if p.armed.Load() {
		panic("poisoned read")
	}
	return p.r.ReadAt(b, off)
}

// logBuffer keeps what the mount logs, for assertions, and passes it on
// to the test log.
type logBuffer struct {
	t  testing.TB
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.b.Write(p)
	l.mu.Unlock()
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestGuestReaderPanicGivesEIO mounts two disks holding the same real
// ext4 image behind readers that panic on demand. A panic inside the ext4
// reader while reading a file is caught at the reader boundary
// (partinfo.Safe, not go-fuse's handler) and answered EIO; the mount goes
// on serving that filesystem, the same file once the fault is gone, and
// the rest of the tree. A panic while opening the filesystem shows
// ERROR.txt naming the panic.
func TestGuestReaderPanicGivesEIO(t *testing.T) {
	testutil.RequireFUSE(t)
	testutil.RequireTools(t, "mkfs.ext4")
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.Mkdir(src, 0o755)
	big := make([]byte, 4*mib)
	rng := rand.New(rand.NewPCG(17, 13))
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(filepath.Join(src, "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "small.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "ext4.img")
	sh(t, "mkfs.ext4", "-q", "-F", "-d", src, img, "32M")
	raw, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}

	repo := newMountRepo(t, ctx)
	s, err := repo.BeginPoint(ctx, "panicvm", blockmap.PointOptions{Time: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"d0", "d1"} {
		w, err := s.AddDisk(ctx, name, int64(len(raw)), blockmap.DiskOptions{Full: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.WriteAt(raw, 0); err != nil {
			t.Fatal(err)
		}
	}
	p, err := s.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}

	logs := &logBuffer{t: t}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// d0 panics on every read once armed; d1 as soon as the provider has
	// read its partition table, so that the filesystem reader's open
	// (on first use of fs/d1/whole) panics.
	var armed0, armed1 atomic.Bool
	inner := guest.Provider(log)
	provider := func(ctx context.Context, ds fusefs.DiskSource) (gofs.InodeEmbedder, error) {
		switch ds.Disk.Name {
		case "d0":
			ds.Reader = poisonReader{r: ds.Reader, armed: &armed0}
		case "d1":
			ds.Reader = poisonReader{r: ds.Reader, armed: &armed1}
			defer armed1.Store(true)
		}
		return inner(ctx, ds)
	}
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	srv, err := fusefs.Mount(ctx, repo, mnt, fusefs.Options{Logger: log, FSProvider: provider})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(true, 5*time.Second); err != nil {
			t.Errorf("unmount: %v", err)
		}
		mountRequireGone(t, mnt)
	})
	root := filepath.Join(mnt, "panicvm", p.ID, "fs", "d0", "whole")
	if b, err := os.ReadFile(filepath.Join(root, "small.txt")); err != nil || string(b) != "hello\n" {
		t.Fatalf("small.txt before the fault: %q, %v", b, err)
	}

	armed0.Store(true)
	if _, err := os.ReadFile(filepath.Join(root, "big.bin")); !errors.Is(err, syscall.EIO) {
		t.Errorf("reading big.bin while the reader panics: %v, want EIO", err)
	}
	// The rest of the mount is served meanwhile.
	if ents, err := os.ReadDir(filepath.Join(mnt, "panicvm", p.ID, "disks")); err != nil || len(ents) != 4 {
		t.Errorf("disks/ while a reader panics: %v, %v", ents, err)
	}
	if got := mountSHA256File(t, filepath.Join(mnt, "panicvm", p.ID, "disks", "d0.img")); got != mountSHA256(raw) {
		t.Errorf("disks/d0.img while its guest reader panics: sha256 %s, want the image's", got)
	}
	armed0.Store(false)
	if b, err := os.ReadFile(filepath.Join(root, "big.bin")); err != nil || !bytes.Equal(b, big) {
		t.Errorf("big.bin once the fault is gone: %d bytes, %v; want the source's %d bytes", len(b), err, len(big))
	}

	msg, err := os.ReadFile(filepath.Join(mnt, "panicvm", p.ID, "fs", "d1", "whole", fusefs.ErrorFileName))
	if err != nil || !strings.Contains(string(msg), "parser panic (poisoned read)") {
		t.Errorf("fs/d1/whole/%s of a reader that panics while opening: %q, %v", fusefs.ErrorFileName, msg, err)
	}
	out := logs.String()
	if !strings.Contains(out, "parser panic (poisoned read)") || strings.Contains(out, "panic in a FUSE request") {
		t.Errorf("the reader's panic was not caught at the reader boundary (partinfo.Safe); mount log:\n%s", out)
	}
}
