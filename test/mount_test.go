package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/fusefs"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// mountDiskSize is deliberately not a multiple of the 256 KiB block size.
const mountDiskSize = 64<<20 + 100<<10

// mountLogger logs to the test.
func mountLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(mountLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type mountLogWriter struct{ t testing.TB }

func (w mountLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newMountRepo creates a repository in a temporary directory.
func newMountRepo(t testing.TB, ctx context.Context) *blockmap.Repo {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	if err := blockmap.Init(ctx, dir, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	repo, err := blockmap.Open(ctx, dir, blockmap.Options{Logger: mountLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

// mountRepo mounts the repository in-process and unmounts it at the end,
// checking that nothing is left in /proc/mounts.
func mountRepo(t testing.TB, ctx context.Context, repo *blockmap.Repo) (*fusefs.Server, string) {
	t.Helper()
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	srv, err := fusefs.Mount(ctx, repo, mnt, fusefs.Options{Logger: mountLogger(t)})
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(true, 5*time.Second); err != nil {
			t.Errorf("unmount: %v", err)
		}
		mountRequireGone(t, mnt)
	})
	return srv, mnt
}

func mountRequireGone(t testing.TB, mnt string) {
	t.Helper()
	data, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), " "+mnt+" ") {
		t.Errorf("%s is still in /proc/mounts after unmounting", mnt)
	}
}

// mountEventually retries check until it succeeds or a generous deadline passes.
func mountEventually(t testing.TB, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func mountImgPath(mnt string, p blockmap.Point, disk string) string {
	return filepath.Join(mnt, p.VM, p.ID, "disks", disk+".img")
}

func TestMountEndToEnd(t *testing.T) {
	testutil.RequireFUSE(t)
	testutil.RequireTools(t, "qemu-img", "cp")
	ctx := context.Background()
	repo := newMountRepo(t, ctx)
	g := newMountDiskGen(t, repo, "web01", "disk0", mountDiskSize, 1)
	gens := []mountGen{g.next(ctx, 0), g.next(ctx, 0.15), g.next(ctx, 0.15), g.next(ctx, 0.15)}
	_, mnt := mountRepo(t, ctx, repo)

	t.Run("tree", func(t *testing.T) {
		entries, err := os.ReadDir(filepath.Join(mnt, "web01"))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		var want []string
		for _, gn := range gens {
			want = append(want, gn.point.ID)
		}
		want = append(want, "latest") // os.ReadDir sorts
		if strings.Join(names, " ") != strings.Join(want, " ") {
			t.Errorf("web01/ lists %v, want %v", names, want)
		}
		target, err := os.Readlink(filepath.Join(mnt, "web01", "latest"))
		if err != nil || target != gens[3].point.ID {
			t.Errorf("latest -> %q (%v), want %q", target, err, gens[3].point.ID)
		}
		st, err := os.Stat(mountImgPath(mnt, gens[0].point, "disk0"))
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != mountDiskSize || st.Mode().Perm() != 0o444 || !st.ModTime().Equal(gens[0].point.Time) {
			t.Errorf("disk0.img: size %d mode %v mtime %v; want %d, 0444, %v", st.Size(), st.Mode(), st.ModTime(), mountDiskSize, gens[0].point.Time)
		}
		for _, p := range []string{"info.json", "disks/disk0.vmdk"} {
			if _, err := os.Stat(filepath.Join(mnt, "web01", gens[0].point.ID, p)); err != nil {
				t.Error(err)
			}
		}
		if _, err := os.Stat(filepath.Join(mnt, "web01", gens[0].point.ID, "fs")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("fs/ without an FSProvider: %v, want not found", err)
		}
	})

	t.Run("info.json", func(t *testing.T) {
		data, err := os.ReadFile(filepath.Join(mnt, "web01", gens[1].point.ID, "info.json"))
		if err != nil {
			t.Fatal(err)
		}
		var info struct {
			VM          string `json:"vm"`
			Point       string `json:"point"`
			Generation  uint32 `json:"generation"`
			Consistency string `json:"consistency"`
			Disks       []struct {
				Name        string `json:"name"`
				Size        int64  `json:"size"`
				BlockSize   int    `json:"block_size"`
				StoredBytes int64  `json:"stored_bytes"`
				Full        bool   `json:"full"`
			} `json:"disks"`
		}
		if err := json.Unmarshal(data, &info); err != nil {
			t.Fatalf("info.json is not valid JSON: %v\n%s", err, data)
		}
		p := gens[1].point
		if info.VM != "web01" || info.Point != p.ID || info.Generation != p.Gen || info.Consistency != p.Consistency ||
			len(info.Disks) != 1 || info.Disks[0].Name != "disk0" || info.Disks[0].Size != mountDiskSize ||
			info.Disks[0].BlockSize != repo.BlockSize() || info.Disks[0].StoredBytes != p.Disks[0].StoredBytes || info.Disks[0].Full {
			t.Errorf("info.json does not describe the point:\n%s", data)
		}
		if !bytes.Contains(data, []byte("\n  \"vm\"")) {
			t.Errorf("info.json is not indented:\n%s", data)
		}
	})

	t.Run("sha256", func(t *testing.T) {
		for _, gn := range gens {
			if got := mountSHA256File(t, mountImgPath(mnt, gn.point, "disk0")); got != gn.sha {
				t.Errorf("point %s: sha256 of disk0.img %s, source %s", gn.point.ID, got, gn.sha)
			}
		}
	})

	t.Run("seek data and holes", func(t *testing.T) {
		for _, gn := range gens {
			dr, err := repo.OpenDisk(ctx, gn.point, "disk0")
			if err != nil {
				t.Fatal(err)
			}
			want := dr.DataExtents()
			dr.Close()
			got := mountSeekExtents(t, mountImgPath(mnt, gn.point, "disk0"))
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("point %s: SEEK_DATA/SEEK_HOLE walk gives %d extents, block map %d\n got %v\nwant %v", gn.point.ID, len(got), len(want), got, want)
			}
			if len(want) < 2 {
				t.Errorf("fixture has only %d data extents; holes are not exercised", len(want))
			}
		}
	})

	t.Run("cp --sparse keeps holes", func(t *testing.T) {
		gn := gens[3]
		dst := filepath.Join(t.TempDir(), "copy.img")
		if out, err := exec.Command("cp", "--sparse=always", mountImgPath(mnt, gn.point, "disk0"), dst).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v\n%s", err, out)
		}
		if got := mountSHA256File(t, dst); got != gn.sha {
			t.Errorf("copy sha256 %s, source %s", got, gn.sha)
		}
		var dst1, src unix.Stat_t
		if err := unix.Stat(dst, &dst1); err != nil {
			t.Fatal(err)
		}
		if err := unix.Stat(gn.src, &src); err != nil {
			t.Fatal(err)
		}
		if dst1.Blocks*512 > src.Blocks*512+1<<20 {
			t.Errorf("copy allocates %d bytes, source %d: holes were not kept", dst1.Blocks*512, src.Blocks*512)
		}
		if dst1.Blocks*512 >= mountDiskSize*9/10 {
			t.Errorf("copy allocates %d of %d bytes: not sparse", dst1.Blocks*512, mountDiskSize)
		}
	})

	t.Run("qemu-img", func(t *testing.T) {
		for _, gn := range gens {
			img := mountImgPath(mnt, gn.point, "disk0")
			mountRun(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", img, gn.src)
		}
		gn := gens[2]
		img := mountImgPath(mnt, gn.point, "disk0")
		vmdk := strings.TrimSuffix(img, ".img") + ".vmdk"
		out := mountRun(t, "qemu-img", "info", "--output=json", vmdk)
		var info struct {
			VirtualSize int64  `json:"virtual-size"`
			Format      string `json:"format"`
		}
		if err := json.Unmarshal([]byte(out), &info); err != nil {
			t.Fatalf("qemu-img info: %v\n%s", err, out)
		}
		if info.Format != "vmdk" || info.VirtualSize != mountDiskSize {
			t.Errorf("qemu-img info of the .vmdk: format %q virtual size %d, want vmdk %d\n%s", info.Format, info.VirtualSize, mountDiskSize, out)
		}
		mountRun(t, "qemu-img", "compare", "-f", "vmdk", "-F", "raw", vmdk, img)
		desc, err := os.ReadFile(vmdk)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{`createType="monolithicFlat"`, `RW 131272 FLAT "disk0.img" 0`, `ddb.adapterType = "lsilogic"`, "ddb.geometry.cylinders"} {
			if !strings.Contains(string(desc), want) {
				t.Errorf("descriptor lacks %q:\n%s", want, desc)
			}
		}
	})

	t.Run("qcow2 overlay on a point", func(t *testing.T) {
		gn := gens[1]
		overlay := filepath.Join(t.TempDir(), "overlay.qcow2")
		mountRun(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", mountImgPath(mnt, gn.point, "disk0"), "-F", "raw", overlay)
		mountRun(t, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", overlay, gn.src)
	})

	t.Run("parallel random reads", func(t *testing.T) {
		gn := gens[2]
		f, err := os.Open(mountImgPath(mnt, gn.point, "disk0"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		src, err := os.Open(gn.src)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func(seed uint64) {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(seed, 7))
				a, b := make([]byte, 300<<10), make([]byte, 300<<10)
				for i := 0; i < 200; i++ {
					n := 1 + rng.IntN(len(a))
					off := rng.Int64N(mountDiskSize)
					na, ea := f.ReadAt(a[:n], off)
					nb, eb := src.ReadAt(b[:n], off)
					if na != nb || (ea == nil) != (eb == nil) || !bytes.Equal(a[:na], b[:nb]) {
						errs <- fmt.Errorf("read %d at %d: mount gave %d bytes (%v), source %d (%v), equal %v", n, off, na, ea, nb, eb, bytes.Equal(a[:na], b[:nb]))
						return
					}
				}
			}(uint64(w))
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})

	t.Run("read-only", func(t *testing.T) {
		p := gens[0].point
		img := mountImgPath(mnt, p, "disk0")
		checks := map[string]error{}
		_, err := os.OpenFile(img, os.O_WRONLY, 0)
		checks["open for writing"] = err
		_, err = os.OpenFile(img, os.O_RDWR, 0)
		checks["open read-write"] = err
		_, err = os.Create(filepath.Join(mnt, "web01", p.ID, "disks", "new.img"))
		checks["create"] = err
		checks["chmod"] = os.Chmod(img, 0o644)
		checks["mkdir"] = os.Mkdir(filepath.Join(mnt, "web01", "x"), 0o755)
		checks["unlink"] = os.Remove(img)
		checks["rename"] = os.Rename(filepath.Join(mnt, "web01", p.ID), filepath.Join(mnt, "web01", "renamed"))
		checks["truncate"] = os.Truncate(img, 0)
		for what, err := range checks {
			if !errors.Is(err, syscall.EROFS) {
				t.Errorf("%s: %v, want EROFS", what, err)
			}
		}
		for _, p := range []string{"nosuchvm", "web01/nosuchpoint", "web01/" + p.ID + "/nosuch", "web01/" + p.ID + "/disks/disk9.img"} {
			if _, err := os.Stat(filepath.Join(mnt, p)); !errors.Is(err, syscall.ENOENT) {
				t.Errorf("stat %s: %v, want ENOENT", p, err)
			}
		}
	})

	t.Run("new points appear, deleted points disappear", func(t *testing.T) {
		before := gens[3].point
		// Look at the VM first so the kernel has its entries cached.
		if _, err := os.ReadDir(filepath.Join(mnt, "web01")); err != nil {
			t.Fatal(err)
		}
		gn := g.next(ctx, 0.05)
		mountEventually(t, "new point appears", func() error {
			target, err := os.Readlink(filepath.Join(mnt, "web01", "latest"))
			if err != nil {
				return err
			}
			if target != gn.point.ID {
				return fmt.Errorf("latest -> %s, want %s (previous %s)", target, gn.point.ID, before.ID)
			}
			return nil
		})
		if got := mountSHA256File(t, filepath.Join(mnt, "web01", "latest", "disks", "disk0.img")); got != gn.sha {
			t.Errorf("new point: sha256 %s, source %s", got, gn.sha)
		}
		// A new VM appears at the root too.
		g2 := newMountDiskGen(t, repo, "db01", "disk0", 1<<20, 9)
		db := g2.next(ctx, 0)
		mountEventually(t, "new VM appears", func() error {
			_, err := os.Stat(mountImgPath(mnt, db.point, "disk0"))
			return err
		})

		// Forget the first point while one of its files is open.
		victim := gens[0].point
		held, err := os.Open(mountImgPath(mnt, victim, "disk0"))
		if err != nil {
			t.Fatal(err)
		}
		defer held.Close()
		if _, err := repo.Forget(ctx, "web01", []string{victim.ID}, false); err != nil {
			t.Fatal(err)
		}
		mountEventually(t, "forgotten point disappears", func() error {
			if _, err := os.Stat(filepath.Join(mnt, "web01", victim.ID)); !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("stat: %v, want not found", err)
			}
			entries, err := os.ReadDir(filepath.Join(mnt, "web01"))
			if err != nil {
				return err
			}
			for _, e := range entries {
				if e.Name() == victim.ID {
					return fmt.Errorf("still listed")
				}
			}
			return nil
		})
		// The open file of the deleted point reads its true bytes or fails with EIO.
		src, err := os.ReadFile(gens[0].src)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1<<20)
		for off := int64(0); off < mountDiskSize; off += 7 << 20 {
			n, err := held.ReadAt(buf, off)
			if err != nil && !errors.Is(err, syscall.EIO) && n == 0 {
				t.Errorf("read of a deleted point at %d: %v, want data or EIO", off, err)
			}
			if !bytes.Equal(buf[:n], src[off:off+int64(n)]) {
				t.Errorf("read of a deleted point at %d gave wrong bytes", off)
			}
		}
		// Other points are untouched.
		if got := mountSHA256File(t, mountImgPath(mnt, gens[1].point, "disk0")); got != gens[1].sha {
			t.Errorf("point %s after forgetting %s: sha256 %s, source %s", gens[1].point.ID, victim.ID, got, gens[1].sha)
		}
	})
}

// mountSeekExtents walks a file with SEEK_DATA / SEEK_HOLE.
func mountSeekExtents(t testing.TB, path string) []blockmap.Extent {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	var out []blockmap.Extent
	fd := int(f.Fd())
	for off := int64(0); off < st.Size(); {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if err != nil {
			t.Fatalf("SEEK_DATA at %d: %v", off, err)
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			t.Fatalf("SEEK_HOLE at %d: %v", data, err)
		}
		out = append(out, blockmap.Extent{Offset: data, Length: hole - data})
		off = hole
	}
	return out
}

func mountRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
