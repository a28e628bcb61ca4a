package test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/fusefs"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// sectorNode is a stand-in guest filesystem: a directory holding the
// disk's first sector, read through the DiskSource's reader.
type sectorNode struct {
	gofs.Inode
	data []byte
}

func (n *sectorNode) OnAdd(ctx context.Context) {
	f := n.NewPersistentInode(ctx, &gofs.MemRegularFile{Data: n.data, Attr: fuse.Attr{Mode: 0o444}}, gofs.StableAttr{})
	n.AddChild("sector0.bin", f, false)
}

// TestMountFSProvider checks the fs/ hook: the provider gets a working
// reader of the point's disk, a failing provider shows ERROR.txt, and a
// panicking one gives EIO (go-fuse's handler is the mount's one recover)
// for that disk only, without disturbing anything else.
func TestMountFSProvider(t *testing.T) {
	testutil.RequireFUSE(t)
	ctx := context.Background()
	repo := newMountRepo(t, ctx)
	s, err := repo.BeginPoint(ctx, "fs01", blockmap.PointOptions{Time: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	first := bytes.Repeat([]byte("boot"), 128)
	for _, name := range []string{"disk0", "bad", "boom"} {
		w, err := s.AddDisk(ctx, name, 1<<20, blockmap.DiskOptions{Full: true})
		if err != nil {
			t.Fatal(err)
		}
		block := make([]byte, w.BlockSize())
		copy(block, first)
		if _, err := w.WriteAt(block, 0); err != nil {
			t.Fatal(err)
		}
	}
	p, err := s.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	calls := map[string]int{}
	provider := func(ctx context.Context, src fusefs.DiskSource) (gofs.InodeEmbedder, error) {
		mu.Lock()
		calls[src.Disk.Name]++
		mu.Unlock()
		switch src.Disk.Name {
		case "bad":
			return nil, errors.New("no partition table found")
		case "boom":
			panic("parser bug")
		}
		buf := make([]byte, 512)
		if _, err := src.Reader.ReadAt(buf, 0); err != nil {
			return nil, err
		}
		if src.Size != 1<<20 || src.Point.ID != p.ID {
			return nil, errors.New("wrong disk source")
		}
		return &sectorNode{data: buf}, nil
	}
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	srv, err := fusefs.Mount(ctx, repo, mnt, fusefs.Options{Logger: mountLogger(t), FSProvider: provider})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(true, 5*time.Second); err != nil {
			t.Errorf("unmount: %v", err)
		}
		mountRequireGone(t, mnt)
	})
	fsDir := filepath.Join(mnt, "fs01", p.ID, "fs")
	// The panic is answered EIO by go-fuse's handler; the request that ran
	// the provider fails (were it a listing of fs/, that listing would),
	// and fs/boom stays EIO without calling the provider again.
	for range 2 {
		if _, err := os.Stat(filepath.Join(fsDir, "boom", "ERROR.txt")); !errors.Is(err, syscall.EIO) {
			t.Errorf("fs/boom of a panicking provider: %v, want EIO", err)
		}
	}
	entries, err := os.ReadDir(fsDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "bad boom disk0" {
		t.Errorf("fs/ lists %v", names)
	}
	got, err := os.ReadFile(filepath.Join(fsDir, "disk0", "sector0.bin"))
	if err != nil || !bytes.Equal(got, first[:512]) {
		t.Errorf("fs/disk0/sector0.bin: %q, %v", got, err)
	}
	if msg, err := os.ReadFile(filepath.Join(fsDir, "bad", "ERROR.txt")); err != nil || !strings.Contains(string(msg), "no partition table found") {
		t.Errorf("fs/bad/ERROR.txt: %q, %v; want it to say %q", msg, err, "no partition table found")
	}
	if _, err := os.Stat(filepath.Join(fsDir, "boom")); !errors.Is(err, syscall.EIO) {
		t.Errorf("fs/boom after listing fs/: %v, want EIO", err)
	}
	// Looking again does not call the provider again.
	os.ReadFile(filepath.Join(fsDir, "disk0", "sector0.bin"))
	mu.Lock()
	defer mu.Unlock()
	if calls["disk0"] != 1 || calls["bad"] != 1 || calls["boom"] != 1 {
		t.Errorf("provider calls %v, want one per disk", calls)
	}
	if err := os.WriteFile(filepath.Join(fsDir, "disk0", "new"), nil, 0o644); err == nil {
		t.Error("writing inside fs/ succeeded on a read-only mount")
	}
	if got := mountSHA256File(t, mountImgPath(mnt, p, "boom")); got == "" {
		t.Error("disk image of a disk whose provider panicked is unreadable")
	}
}
