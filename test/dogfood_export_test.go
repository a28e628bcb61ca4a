package test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// losetup attaches file to a free loop device and detaches it at the end.
func losetup(t *testing.T, file string) string {
	t.Helper()
	out, err := exec.Command("losetup", "--find", "--show", file).Output()
	if err != nil {
		t.Fatalf("losetup %s: %v", file, err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if _, err := os.Stat(dev); err != nil {
			// a failed export removed the node: put it back so the
			// machine keeps its loop device
			var st syscall.Stat_t
			if syscall.Stat("/dev/loop-control", &st) == nil {
				var minor uint32
				if _, err := fmt.Sscan(strings.TrimPrefix(dev, "/dev/loop"), &minor); err == nil {
					syscall.Mknod(dev, syscall.S_IFBLK|0o660, int(7<<8|minor))
				}
			}
		}
		exec.Command("losetup", "-d", dev).Run()
	})
	return dev
}

// TestExportToDevice: `cairn export` onto an existing block device writes
// the point over it (holes zeroed, the rest of the device untouched) and
// refuses a device smaller than the disk before writing anything; onto a
// FIFO it streams the whole disk. The output path is never removed (the
// export used to truncate, fail with "invalid argument" and delete the
// device node).
func TestExportToDevice(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "losetup")
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	src := filepath.Join(dir, "disk.img")
	makeImage(t, src, 4<<20)
	writeRandom(t, src, 0, 1<<20, 1)
	writeRandom(t, src, 3<<20, 512<<10, 2)
	mustCairn(t, "--repo", repo, "init")
	mustCairn(t, "--repo", repo, "import", "--vm", "vm1", "--disk", "d0", src)
	want, _ := os.ReadFile(src)

	t.Run("too small", func(t *testing.T) {
		back := filepath.Join(dir, "small.bin")
		writeRandom(t, back, 0, 1<<20, 3)
		before, _ := os.ReadFile(back)
		dev := losetup(t, back)
		res := runCairn(t, nil, "--repo", repo, "export", "--vm", "vm1", "--disk", "d0", dev)
		if res.code == 0 || !strings.Contains(res.stderr, "smaller than the disk") || !strings.Contains(res.stderr, "nothing was written") {
			t.Fatalf("export to a 1 MiB device: exit %d, %q", res.code, res.stderr)
		}
		if fi, err := os.Stat(dev); err != nil || fi.Mode()&os.ModeDevice == 0 {
			t.Fatalf("device node %s after a failed export: %v", dev, err)
		}
		if after, _ := os.ReadFile(back); !bytes.Equal(before, after) {
			t.Fatal("the refused export changed the device")
		}
	})
	t.Run("larger device", func(t *testing.T) {
		back := filepath.Join(dir, "big.bin")
		writeRandom(t, back, 0, 6<<20, 4) // old content everywhere, holes too
		before, _ := os.ReadFile(back)
		dev := losetup(t, back)
		mustCairn(t, "--repo", repo, "export", "--vm", "vm1", "--disk", "d0", dev)
		f, err := os.Open(dev)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(f)
		f.Close()
		if len(got) != 6<<20 {
			t.Fatalf("device reads %d bytes, want %d", len(got), 6<<20)
		}
		if !bytes.Equal(got[:4<<20], want) {
			t.Fatal("device does not hold the point's disk (holes not zeroed?)")
		}
		if !bytes.Equal(got[4<<20:], before[4<<20:]) {
			t.Fatal("bytes past the disk's size changed")
		}
	})
	t.Run("fifo", func(t *testing.T) {
		fifo := filepath.Join(dir, "fifo")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		got := make(chan []byte)
		go func() {
			f, err := os.Open(fifo)
			if err != nil {
				got <- nil
				return
			}
			b, _ := io.ReadAll(f)
			f.Close()
			got <- b
		}()
		res := runCairn(t, nil, "--repo", repo, "export", "--vm", "vm1", "--disk", "d0", fifo)
		b := <-got
		if res.code != 0 || !bytes.Equal(b, want) {
			t.Fatalf("export to a FIFO: exit %d (%s), %d bytes read, want the disk's %d", res.code, res.stderr, len(b), len(want))
		}
		if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
			t.Fatalf("FIFO after the export: %v", err)
		}
	})
	t.Run("unknown disk said once", func(t *testing.T) {
		res := runCairn(t, nil, "--repo", repo, "export", "--vm", "vm1", "--disk", "d7", filepath.Join(dir, "o.img"))
		if res.code == 0 || strings.Count(res.stderr, `no disk "d7"`) != 1 || !strings.Contains(res.stderr, "[d0]") {
			t.Fatalf("unknown disk: exit %d, %q: want the disk and the point's disks said once", res.code, res.stderr)
		}
	})
}

// TestGlobalFlagsAfterCommand: --repo and --log-level work after the
// command's name too (`cairn points --repo DIR`, `cairn restore vm ...
// --log-level debug` as docs/restore.md writes it); they used to fail with
// "flag provided but not defined" and the whole help.
func TestGlobalFlagsAfterCommand(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	src := filepath.Join(dir, "d.img")
	makeImage(t, src, 1<<20)
	writeRandom(t, src, 0, 64<<10, 9)
	env := []string{"CAIRN_REPO="}
	for _, args := range [][]string{
		{"init", "--repo", repo},
		{"import", "--vm", "vm1", "--disk", "d0", "--repo=" + repo, src},
		{"points", "--repo", repo, "--log-level", "warn"},
	} {
		if r := runCairn(t, env, args...); r.code != 0 {
			t.Fatalf("cairn %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	if r := runCairn(t, env, "points", "--repo", repo); !strings.Contains(r.stdout, "vm1") {
		t.Fatalf("points --repo: %q", r.stdout)
	}
}

// startExport starts `cairn nbd-export ARGS` and returns once it printed
// its URI, with a stop that interrupts it and waits for its end; when it
// exits instead, stop is nil and said is what it said.
func startExport(t *testing.T, args ...string) (stop func(), said string) {
	t.Helper()
	cmd := exec.Command(buildCairn(t), append([]string{"nbd-export"}, args...)...)
	stdout, stderr := &serveLogBuffer{}, &serveLogBuffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.After(30 * time.Second)
	for !strings.Contains(stdout.String(), "nbd") {
		select {
		case <-exited:
			return nil, stderr.String()
		case <-deadline:
			cmd.Process.Kill()
			<-exited
			t.Fatalf("nbd-export %v neither served nor ended: %s", args, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	stop = func() { cmd.Process.Signal(syscall.SIGINT); <-exited }
	t.Cleanup(stop)
	return stop, ""
}

// TestNBDExportOverlayBase: a --writable-overlay holds writes made over
// one disk of one point; serving it over another disk of the same size
// (another VM, another point) is refused instead of showing those blocks
// over bytes they were not written on.
func TestNBDExportOverlayBase(t *testing.T) {
	testutil.RequireTools(t, "qemu-io")
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repo, "init")
	for i, vm := range []string{"vma", "vmb"} {
		src := filepath.Join(dir, vm+".img")
		makeImage(t, src, 4<<20)
		writeRandom(t, src, 0, 1<<20, uint64(20+i))
		mustCairn(t, "--repo", repo, "import", "--vm", vm, "--disk", "d0", src)
	}
	ov := filepath.Join(dir, "overlay")
	sock := filepath.Join(dir, "nbd.sock")
	uri := "nbd+unix:///?socket=" + sock
	stop, said := startExport(t, "--repo", repo, "--vm", "vma", "--disk", "d0", "--socket", sock, "--writable-overlay", ov)
	if stop == nil {
		t.Fatalf("nbd-export of vma: %s", said)
	}
	if out, err := exec.Command("qemu-io", "-f", "raw", "-c", "write -P 0xab 0 4096", uri).CombinedOutput(); err != nil {
		t.Fatalf("qemu-io: %v %s", err, out)
	}
	stop()
	if stop, said := startExport(t, "--repo", repo, "--vm", "vmb", "--disk", "d0", "--socket", sock, "--writable-overlay", ov); stop != nil || !strings.Contains(said, "another disk") {
		t.Fatalf("the overlay of vma served over vmb (%q)", said)
	}
	if stop, said := startExport(t, "--repo", repo, "--vm", "vma", "--disk", "d0", "--socket", sock, "--writable-overlay", ov); stop == nil {
		t.Fatalf("the overlay of vma refused over vma: %s", said)
	}
	out, err := exec.Command("qemu-io", "-r", "-f", "raw", "-c", "read -P 0xab 0 4096", uri).CombinedOutput()
	if err != nil || strings.Contains(string(out), "Pattern verification failed") {
		t.Fatalf("the reused overlay lost its write: %v %s", err, out)
	}
}
