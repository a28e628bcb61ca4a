package fusefs

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// inoWalk lists every directory below dir and stats every entry, and
// returns each path's inode number as stat reports it.
func inoWalk(t *testing.T, dir string) map[string]uint64 {
	t.Helper()
	inos := map[string]uint64{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		inos[path] = fi.Sys().(*syscall.Stat_t).Ino
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return inos
}

// listedInos is the inode number getdents64 lists for each entry of dir.
func listedInos(t *testing.T, dir string) map[string]uint64 {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]uint64{}
	buf := make([]byte, 64<<10)
	for {
		n, err := syscall.Getdents(int(f.Fd()), buf)
		if err != nil {
			t.Fatalf("getdents %s: %v", dir, err)
		}
		if n == 0 {
			return out
		}
		for off := 0; off < n; {
			// struct linux_dirent64: ino, off, reclen, type, name
			ino := binary.NativeEndian.Uint64(buf[off:])
			reclen := int(binary.NativeEndian.Uint16(buf[off+16:]))
			name := buf[off+19 : off+reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			out[string(name)] = ino
			off += reclen
		}
	}
}

// TestMountInodeTableShrinksWithTheCatalog: the mount's table of inode
// numbers holds an entry for every entry of its own directories ever
// listed; when points are forgotten (and a VM loses all its points) and
// the mount sees the catalog change, their entries and everything below
// them leave the table, which falls back to what the remaining points
// need, while the remaining entries keep their numbers. A VM that comes
// back is a new directory with a number never used before. (The table
// grew by every point ever listed, for the mount's life.)
func TestMountInodeTableShrinksWithTheCatalog(t *testing.T) {
	testutil.RequireFUSE(t)
	ctx := context.Background()
	const many, keep = 40, 4
	repo, pts := testRepo(t, many)
	var vm2 []string
	for i := 0; i < 3; i++ {
		vm2 = append(vm2, commitPoint(t, repo, "vm2", byte(i+1)).ID)
	}
	mnt := t.TempDir()
	srv, err := Mount(ctx, repo, mnt, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Unmount(true, 5*time.Second) })

	before := inoWalk(t, mnt)
	// root, and per VM: its directory, latest, and per point: the point,
	// info.json, disks, disk0.img, disk0.vmdk
	perPoint := 5
	if want := 1 + 2*2 + (many+3)*perPoint; len(before) != want {
		t.Fatalf("walk saw %d entries, want %d", len(before), want)
	}
	if got, want := srv.t.inos.size(), len(before)-1; got != want {
		t.Fatalf("inode table holds %d entries after a walk of %d, want %d", got, len(before)-1, want)
	}
	maxIno := uint64(0)
	for _, n := range before {
		maxIno = max(maxIno, n)
	}

	// An open vm2/ keeps its node in the mount after vm2 is gone.
	held, err := os.Open(filepath.Join(mnt, "vm2"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	var gone []string
	for _, p := range pts[:many-keep] {
		gone = append(gone, p.ID)
	}
	if _, err := repo.Forget(ctx, "vm", gone, false); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Forget(ctx, "vm2", vm2, false); err != nil {
		t.Fatal(err)
	}
	want := 2 + keep*perPoint // vm, vm/latest and the kept points
	eventually(t, "inode table trimmed", func() error {
		if _, err := listNames(filepath.Join(mnt, "vm")); err != nil {
			return err
		}
		if got := srv.t.inos.size(); got != want {
			return fmt.Errorf("inode table holds %d entries after forgetting %d of %d points, want %d", got, many-keep+3, many+3, want)
		}
		return nil
	})

	after := inoWalk(t, mnt)
	if len(after) != 1+want {
		t.Errorf("walk after the forget saw %d entries, want %d", len(after), 1+want)
	}
	for path, n := range after {
		if was, ok := before[path]; !ok || was != n {
			t.Errorf("%s: inode %d after the forget, was %d (listed before: %v)", path, n, was, ok)
		}
	}
	if got := srv.t.inos.size(); got != want {
		t.Errorf("inode table holds %d entries after walking the kept points, want %d", got, want)
	}

	// vm2 comes back: a new directory, with numbers never used before.
	commitPoint(t, repo, "vm2", 9)
	eventually(t, "vm2 back", func() error {
		_, err := os.Stat(filepath.Join(mnt, "vm2"))
		return err
	})
	again := inoWalk(t, mnt)
	for path, n := range again {
		if _, kept := after[path]; kept {
			if n != after[path] {
				t.Errorf("%s: inode %d after vm2 came back, was %d", path, n, after[path])
			}
			continue
		}
		if n <= maxIno {
			t.Errorf("%s: inode %d, a number given out before (up to %d)", path, n, maxIno)
		}
	}
	// The root lists vm2 with the number stat reports for it.
	if listed, stated := listedInos(t, mnt)["vm2"], again[filepath.Join(mnt, "vm2")]; listed != stated {
		t.Errorf("vm2 listed as inode %d, stat says %d", listed, stated)
	}
	if got, want := srv.t.inos.size(), len(again)-1; got != want {
		t.Errorf("inode table holds %d entries for a tree of %d, want %d", got, len(again)-1, want)
	}
}

// emptyDir is an FSProvider's node with nothing in it.
type emptyDir struct{ gofs.Inode }

// TestMountDropsGuestNodesOfDeletedPoints: the guest filesystem nodes a
// lookup builds in a point already deleted (its directory still open)
// leave the mount at the next catalog change. (They stayed for the
// mount's life: only points the change itself deleted were swept.)
func TestMountDropsGuestNodesOfDeletedPoints(t *testing.T) {
	testutil.RequireFUSE(t)
	ctx := context.Background()
	repo, pts := testRepo(t, 2)
	provider := func(ctx context.Context, src DiskSource) (gofs.InodeEmbedder, error) { return &emptyDir{}, nil }
	mnt := t.TempDir()
	srv, err := Mount(ctx, repo, mnt, Options{FSProvider: provider})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Unmount(true, 5*time.Second) })

	deleted := filepath.Join(mnt, "vm", pts[0].ID)
	held, err := os.Open(deleted)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := repo.Forget(ctx, "vm", []string{pts[0].ID}, false); err != nil {
		t.Fatal(err)
	}
	eventually(t, "forgotten point gone", func() error {
		if _, err := os.Stat(deleted); !os.IsNotExist(err) {
			return fmt.Errorf("stat of the forgotten point: %v, want not found", err)
		}
		return nil
	})
	// A lookup through the open directory of the deleted point.
	size := srv.t.inos.size()
	var st unix.Stat_t
	if err := unix.Fstatat(int(held.Fd()), "fs/disk0", &st, 0); err != nil {
		t.Fatalf("fs/disk0 of the open deleted point: %v", err)
	}
	if got := srv.t.inos.size(); got != size {
		t.Errorf("inode table holds %d entries after a lookup in a deleted point, was %d", got, size)
	}
	deadNodes := func() int {
		srv.t.fsMu.Lock()
		defer srv.t.fsMu.Unlock()
		n := 0
		for k := range srv.t.fsNodes {
			if k.Gen == pts[0].Gen {
				n++
			}
		}
		return n
	}
	if deadNodes() != 1 {
		t.Fatalf("the lookup built %d guest nodes of the deleted point, want 1", deadNodes())
	}
	p3 := commitPoint(t, repo, "vm", 3)
	eventually(t, "guest nodes of the deleted point dropped", func() error {
		if _, err := os.Stat(filepath.Join(mnt, "vm", p3.ID)); err != nil {
			return err
		}
		if n := deadNodes(); n != 0 {
			return fmt.Errorf("%d guest nodes of the deleted point kept after the next catalog change, want 0", n)
		}
		return nil
	})
}

// TestInoTableTrim: trim keeps the numbers of what the snapshot reaches,
// drops deleted points (by id and generation) and VMs without points with
// everything below them, and never hands a dropped number out again.
func TestInoTableTrim(t *testing.T) {
	var tab inoTable
	snap := func(pts ...blockmap.Point) *catalogSnap {
		s := &catalogSnap{vms: map[string]*vmView{}}
		for _, p := range pts {
			v := s.vms[p.VM]
			if v == nil {
				v = &vmView{name: p.VM, byID: map[string]int{}}
				s.vms[p.VM] = v
			}
			v.byID[p.ID] = len(v.points)
			v.points = append(v.points, p)
		}
		return s
	}
	seen := map[uint64]bool{}
	number := func(parent uint64, name string, dir bool) uint64 {
		n := tab.get(parent, name, dir)
		seen[n] = true
		return n
	}
	// fill numbers a VM's directory, latest and, per point, its directory,
	// info.json, disks/ and disks/disk0.img.
	fill := func(pts ...blockmap.Point) map[string]uint64 {
		out := map[string]uint64{}
		for _, p := range pts {
			vm := number(fuse.FUSE_ROOT_ID, p.VM, true)
			number(vm, latestName, false)
			pd := number(vm, pointInoName(p), true)
			number(pd, infoName, false)
			d := number(pd, disksName, true)
			out[p.VM+"/"+p.ID] = pd
			out[p.VM+"/"+p.ID+"/disks/disk0.img"] = number(d, "disk0.img", false)
		}
		return out
	}
	var pts []blockmap.Point
	for i := range 20 {
		pts = append(pts, blockmap.Point{VM: "a", ID: fmt.Sprintf("p%02d", i), Gen: uint32(i + 1)})
	}
	b := blockmap.Point{VM: "b", ID: "p00", Gen: 100}
	before := fill(append(pts, b)...)
	if got, want := tab.size(), 2*2+21*4; got != want {
		t.Fatalf("table holds %d entries, want %d", got, want)
	}

	kept := pts[15:]
	tab.trim(snap(), snap(kept...))
	if got, want := tab.size(), 2+5*4; got != want {
		t.Errorf("after trim the table holds %d entries, want %d", got, want)
	}
	if got := len(tab.dirs); got != 1+1+5*2 {
		t.Errorf("after trim %d directories are numbered, want %d", got, 1+1+5*2)
	}
	seenBefore := len(seen)
	now := fill(kept...)
	for k, n := range now {
		if before[k] != n {
			t.Errorf("%s: number %d after trim, was %d", k, n, before[k])
		}
	}
	if len(seen) != seenBefore {
		t.Errorf("numbering kept points again handed out %d new numbers", len(seen)-seenBefore)
	}

	// A point pulled again under the same id (a new generation) and the
	// VM b coming back get numbers never handed out before.
	repulled := pts[3]
	repulled.Gen = 500
	var top uint64
	for n := range seen {
		top = max(top, n)
	}
	again := fill(repulled, b)
	for k, n := range again {
		if n <= top {
			t.Errorf("%s: number %d, one handed out before (up to %d)", k, n, top)
		}
	}
	// Below a dropped directory nothing is recorded.
	size := tab.size()
	deadDir := before["a/"+pts[0].ID]
	n1, n2 := tab.get(deadDir, infoName, false), tab.get(deadDir, infoName, false)
	if n1 == n2 || tab.size() != size {
		t.Errorf("entries below a dropped directory: numbers %d, %d and %d entries (was %d); want fresh numbers, nothing recorded", n1, n2, tab.size(), size)
	}
}
