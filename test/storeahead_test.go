package test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/fusefs"
	"github.com/cairnbackup/cairn/fusefs/guest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// traceLog collects go-fuse's request trace (fusefs.Options.Debug).
type traceLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *traceLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// ops counts the requests of each kind received since the last call.
func (l *traceLog) ops() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for _, m := range regexp.MustCompile(`rx \d+: ([A-Z_]+)`).FindAllSubmatch(l.buf.Bytes(), -1) {
		out[string(m[1])]++
	}
	l.buf.Reset()
	return out
}

// mountTraced mounts the repository at mnt (made here) with guest
// filesystems and go-fuse's request trace, until the test ends.
func mountTraced(t *testing.T, repoDir, mnt string) *traceLog {
	t.Helper()
	ctx := context.Background()
	repo, err := blockmap.Open(ctx, repoDir, blockmap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repo.Close() })
	trace := &traceLog{}
	os.Mkdir(mnt, 0o755)
	srv, err := fusefs.Mount(ctx, repo, mnt, fusefs.Options{Debug: true,
		Logger: slog.New(slog.NewTextHandler(trace, &slog.HandlerOptions{Level: slog.LevelDebug})), FSProvider: guest.Provider(nil)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Unmount(true, 5*time.Second) })
	return trace
}

// resident reports whether every page of the file is in the page cache,
// without reading it (mmap + mincore).
func resident(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return false, err
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return false, err
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		return false, e
	}
	for _, v := range vec {
		if v&1 == 0 {
			return false, nil
		}
	}
	return true, nil
}

// TestGuestFilesStoredAhead: reading a small file of an ext4 or XFS guest
// from its start makes the mount push the next files of its directory
// (in listing order) into the kernel's page cache, so that reading them
// sends no READ request, and what was pushed is each file's exact
// content. A directory that is only listed gets nothing pushed.
func TestGuestFilesStoredAhead(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireFUSE(t)
	testutil.RequireTools(t, "mkfs.ext4", "mkfs.xfs")
	dir := t.TempDir()
	repoDir := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repoDir, "init")
	rng := rand.New(rand.NewPCG(17, 17))
	want := map[string][]byte{}
	for i := range 80 {
		b := make([]byte, 1+rng.IntN(20<<10))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		want[fmt.Sprintf("f%03d", i)] = b
	}
	for _, fsName := range []string{"ext4", "xfs"} {
		img := filepath.Join(dir, fsName+".img")
		makeImage(t, img, 320*mib)
		if fsName == "ext4" {
			sh(t, "mkfs.ext4", "-q", "-F", img)
		} else {
			sh(t, "mkfs.xfs", "-q", "-f", img)
		}
		m := filepath.Join(dir, "fill")
		os.MkdirAll(m, 0o755)
		sh(t, "mount", "-o", "loop", img, m)
		for _, d := range []string{"files", "listed"} {
			os.Mkdir(filepath.Join(m, d), 0o755)
			for name, b := range want {
				if err := os.WriteFile(filepath.Join(m, d, name), b, 0o644); err != nil {
					exec.Command("umount", m).Run()
					t.Fatal(err)
				}
			}
		}
		sh(t, "umount", m)
		mustCairn(t, "--repo", repoDir, "import", "--vm", "s-"+fsName, "--disk", "sda", img)
	}
	mnt := filepath.Join(dir, "mnt")
	trace := mountTraced(t, repoDir, mnt)
	for _, fsName := range []string{"ext4", "xfs"} {
		t.Run(fsName, func(t *testing.T) {
			root := filepath.Join(mnt, "s-"+fsName, "latest", "fs", "sda", "whole")
			listing := func(d string) []string {
				f, err := os.Open(filepath.Join(root, d))
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				names, err := f.Readdirnames(-1) // listing order
				if err != nil {
					t.Fatal(err)
				}
				return names
			}
			check := func(path string) {
				got, err := os.ReadFile(path)
				if err != nil || !bytes.Equal(got, want[filepath.Base(path)]) {
					t.Fatalf("%s: %d bytes, %v; want its %d bytes", path, len(got), err, len(want[filepath.Base(path)]))
				}
			}
			listed := listing("listed")
			names := listing("files")
			check(filepath.Join(root, "files", names[0]))
			next := names[1:min(len(names), 17)]
			var missing []string
			deadline := time.Now().Add(10 * time.Second)
			for {
				missing = missing[:0]
				for _, n := range next {
					if ok, err := resident(filepath.Join(root, "files", n)); err != nil {
						t.Fatal(err)
					} else if !ok {
						missing = append(missing, n)
					}
				}
				if len(missing) == 0 || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if len(missing) > 0 {
				t.Fatalf("reading %s did not bring the next files into the page cache: %s missing", names[0], strings.Join(missing, " "))
			}
			trace.ops()
			for _, n := range next {
				check(filepath.Join(root, "files", n))
			}
			if ops := trace.ops(); ops["READ"] != 0 {
				t.Errorf("reading %d files pushed ahead sent %d READ requests, want 0 (all: %v)", len(next), ops["READ"], ops)
			}
			// Every file reads right, however it got into the cache.
			for _, n := range names {
				check(filepath.Join(root, "files", n))
			}
			// Listing pushes nothing.
			for _, n := range listed {
				if ok, err := resident(filepath.Join(root, "listed", n)); err != nil || ok {
					t.Errorf("%s of a directory only listed is in the page cache (%v)", n, err)
				}
			}
		})
	}
}
