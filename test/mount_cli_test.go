package test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/fusefs"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestMountCorruptBlock flips a byte of a stored block: reading that block
// through the mount gives EIO, every other block reads correctly.
func TestMountCorruptBlock(t *testing.T) {
	testutil.RequireFUSE(t)
	ctx := context.Background()
	repo := newMountRepo(t, ctx)
	const size = 8<<20 + 4096
	g := newMountDiskGen(t, repo, "bad01", "disk0", size, 3)
	g.next(ctx, 0)
	gn := g.next(ctx, 0.5)
	delta := filepath.Join(repo.Dir(), "images", strconv.FormatUint(uint64(gn.point.Disks[0].ID), 10), strconv.FormatUint(uint64(gn.point.Gen), 10)+".img")
	f, err := os.OpenFile(delta, os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("open delta image: %v", err)
	}
	bad, err := unix.Seek(int(f.Fd()), 0, unix.SEEK_DATA)
	if err != nil {
		t.Fatalf("find a stored block in %s: %v", delta, err)
	}
	var b [1]byte
	if _, err := f.ReadAt(b[:], bad+100); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b[:], bad+100); err != nil {
		t.Fatal(err)
	}
	f.Close()

	_, mnt := mountRepo(t, ctx, repo)
	img, err := os.Open(mountImgPath(mnt, gn.point, "disk0"))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	src, err := os.ReadFile(gn.src)
	if err != nil {
		t.Fatal(err)
	}
	bs := int64(repo.BlockSize())
	badBlock := bad / bs
	buf := make([]byte, bs)
	// Read the other blocks first, the corrupt one last, so readahead of
	// a failing request cannot hide good blocks.
	order := []int64{}
	for blk := int64(0); blk*bs < size; blk++ {
		if blk != badBlock {
			order = append(order, blk)
		}
	}
	order = append(order, badBlock)
	for _, blk := range order {
		off := blk * bs
		n, err := img.ReadAt(buf, off)
		if blk == badBlock {
			if !errors.Is(err, syscall.EIO) {
				t.Errorf("read of the corrupt block at %d: %d bytes, %v; want EIO", off, n, err)
			}
			continue
		}
		if err != nil && n < len(buf) && off+int64(n) != size {
			t.Errorf("read block at %d: %d bytes, %v", off, n, err)
			continue
		}
		if !bytes.Equal(buf[:n], src[off:off+int64(n)]) {
			t.Errorf("block at %d reads wrong bytes", off)
		}
	}
}

// TestMountCommand runs the real `cairn mount` binary: it mounts, serves,
// and unmounts cleanly on SIGTERM, also while a file is held open; `cairn
// umount` unmounts it from another process; bad mount points give clear
// errors.
func TestMountCommand(t *testing.T) {
	testutil.RequireFUSE(t)
	testutil.RequireTools(t, "go")
	ctx := context.Background()
	bin := buildCairn(t)
	repo := newMountRepo(t, ctx)
	g := newMountDiskGen(t, repo, "app01", "disk0", 4<<20, 5)
	gn := g.next(ctx, 0)
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}

	t.Run("bad mount points", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		os.WriteFile(file, nil, 0o644)
		for dir, want := range map[string]string{
			filepath.Join(t.TempDir(), "missing"): "does not exist",
			file:                                  "not a directory",
			"/proc":                               "already mounted",
		} {
			out, err := exec.Command(bin, "--repo", repo.Dir(), "mount", dir).CombinedOutput()
			if err == nil || !strings.Contains(string(out), want) {
				t.Errorf("cairn mount %s: %v, output %q; want an error saying %q", dir, err, out, want)
			}
		}
	})

	t.Run("SIGTERM unmounts", func(t *testing.T) {
		cmd := mountStartCLI(t, bin, repo.Dir(), mnt)
		if got := mountSHA256File(t, mountImgPath(mnt, gn.point, "disk0")); got != gn.sha {
			t.Errorf("sha256 through cairn mount %s, source %s", got, gn.sha)
		}
		out, err := exec.Command(bin, "--repo", repo.Dir(), "mount", mnt).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "already mounted") {
			t.Errorf("second cairn mount on %s: %v %q; want 'already mounted'", mnt, err, out)
		}
		cmd.Process.Signal(syscall.SIGTERM)
		mountWaitExit(t, cmd)
		mountRequireGone(t, mnt)
	})

	t.Run("import in another process while mounted", func(t *testing.T) {
		cmd := mountStartCLI(t, bin, repo.Dir(), mnt)
		// Look at the VM first, so the new point must replace cached state.
		if _, err := os.ReadDir(filepath.Join(mnt, "app01")); err != nil {
			t.Fatal(err)
		}
		src := filepath.Join(t.TempDir(), "new.raw")
		data := bytes.Repeat([]byte("cairn-import\n"), 300000)
		if err := os.WriteFile(src, data, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "--repo", repo.Dir(), "import", "--vm", "app01", "--disk", "disk0",
			"--time", "2026-12-01T00:00:00Z", src).CombinedOutput()
		if err != nil {
			t.Fatalf("cairn import while mounted: %v\n%s", err, out)
		}
		mountEventually(t, "imported point appears as latest", func() error {
			target, err := os.Readlink(filepath.Join(mnt, "app01", "latest"))
			if err != nil {
				return err
			}
			if target != "2026-12-01T00-00-00Z" {
				return errors.New("latest -> " + target)
			}
			return nil
		})
		got, err := os.ReadFile(filepath.Join(mnt, "app01", "latest", "disks", "disk0.img"))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("imported image through the mount: %d bytes, equal %v, %v", len(got), bytes.Equal(got, data), err)
		}
		cmd.Process.Signal(syscall.SIGTERM)
		mountWaitExit(t, cmd)
		mountRequireGone(t, mnt)
	})

	t.Run("SIGTERM while busy detaches", func(t *testing.T) {
		cmd := mountStartCLI(t, bin, repo.Dir(), mnt, "--grace", "2s")
		held, err := os.Open(mountImgPath(mnt, gn.point, "disk0"))
		if err != nil {
			t.Fatal(err)
		}
		defer held.Close()
		cmd.Process.Signal(syscall.SIGTERM)
		mountWaitExit(t, cmd)
		mountRequireGone(t, mnt)
		if log := cmd.Stderr.(*bytes.Buffer).String(); !strings.Contains(log, "busy") {
			t.Errorf("busy unmount was not reported; log:\n%s", log)
		}
	})

	t.Run("cairn umount", func(t *testing.T) {
		cmd := mountStartCLI(t, bin, repo.Dir(), mnt)
		if out, err := exec.Command(bin, "umount", mnt).CombinedOutput(); err != nil {
			t.Fatalf("cairn umount: %v\n%s", err, out)
		}
		mountWaitExit(t, cmd)
		mountRequireGone(t, mnt)
		out, err := exec.Command(bin, "umount", mnt).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "nothing is mounted") {
			t.Errorf("cairn umount of an unmounted dir: %v %q", err, out)
		}
	})
}

// mountStartCLI starts `cairn mount` and waits until the mount is there.
func mountStartCLI(t *testing.T, bin, repoDir, mnt string, flags ...string) *exec.Cmd {
	t.Helper()
	args := append([]string{"--repo", repoDir, "mount"}, flags...)
	cmd := exec.Command(bin, append(args, mnt)...)
	cmd.Stderr = &bytes.Buffer{}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
			fusefs.Unmount(mnt, true)
		}
	})
	mountEventually(t, "cairn mount is mounted", func() error {
		if cmd.ProcessState != nil {
			return errors.New("cairn mount exited: " + cmd.Stderr.(*bytes.Buffer).String())
		}
		mi, ok, err := fusefs.FindMount(mnt)
		if err != nil || !ok || mi.FSType != "fuse.cairn" {
			return errors.New("not mounted yet")
		}
		return nil
	})
	return cmd
}

func mountWaitExit(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("cairn mount exited with %v; log:\n%s", err, cmd.Stderr.(*bytes.Buffer))
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("cairn mount did not exit; log:\n%s", cmd.Stderr.(*bytes.Buffer))
	}
}
