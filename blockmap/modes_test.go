package blockmap

import (
	"context"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// privateTree fails the test for every path under dir that other users
// may read, write or enter, and reports how many paths it saw.
func privateTree(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n++
		want := FileMode
		if fi.IsDir() {
			want = DirMode
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRepoModes: with the common umask 022 every file and directory a
// repository gets (cairn.json, index, delta images, locks, sessions,
// catalog.seq) is private to its owner; a repository made world-readable
// (by an older cairn) is listed by LooseModes and fixed by the next
// writer; a umask of 0 changes nothing.
func TestRepoModes(t *testing.T) {
	for _, umask := range []int{0o022, 0} {
		old := syscall.Umask(umask)
		func() {
			defer syscall.Umask(old)
			r := newTestRepo(t)
			rng := rand.New(rand.NewPCG(1, uint64(umask)))
			d := &modelDisk{name: "disk0", data: make([]byte, 8*testBS), changed: map[int64]bool{}}
			for i := range d.data {
				d.data[i] = byte(rng.Uint32())
			}
			backup(t, r, "vm1", []*modelDisk{d}, true, time.Unix(1000, 0))
			d.mutate(rng)
			backup(t, r, "vm1", []*modelDisk{d}, false, time.Unix(2000, 0))
			if n := privateTree(t, r.Dir()); n < 10 {
				t.Errorf("umask %03o: only %d paths in the repository", umask, n)
			}
			if loose, err := r.LooseModes(); err != nil || len(loose) != 0 {
				t.Errorf("umask %03o: LooseModes of a new repository: %v, %v", umask, loose, err)
			}
		}()
	}

	// An older repository: everything 0644/0755. Readers leave it (and
	// LooseModes names it); the first writer fixes it.
	r := newTestRepo(t)
	d := &modelDisk{name: "disk0", data: make([]byte, 4*testBS), changed: map[int64]bool{}}
	d.data[0] = 1
	backup(t, r, "vm1", []*modelDisk{d}, true, time.Unix(1000, 0))
	n := 0
	filepath.WalkDir(r.Dir(), func(p string, de fs.DirEntry, err error) error {
		mode := fs.FileMode(0o644)
		if de.IsDir() {
			mode = 0o755
		}
		n++
		return os.Chmod(p, mode)
	})
	ctx := context.Background()
	r2, err := Open(ctx, r.Dir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Catalog(ctx); err != nil {
		t.Fatal(err)
	}
	loose, err := r2.LooseModes()
	if err != nil || len(loose) != n {
		t.Fatalf("LooseModes of a 0644 repository: %d of %d paths (%v)", len(loose), n, err)
	}
	if loose[0] != r.Dir() {
		t.Errorf("LooseModes does not name the repository first: %v", loose[:3])
	}
	d.data[testBS] = 2
	d.changed[1] = true
	backup(t, r2, "vm1", []*modelDisk{d}, false, time.Unix(2000, 0))
	privateTree(t, r.Dir())

	// FixModes (cairn serve at start) fixes everything at once.
	n = 0
	filepath.WalkDir(r.Dir(), func(p string, de fs.DirEntry, err error) error {
		n++
		return os.Chmod(p, map[bool]fs.FileMode{true: 0o775, false: 0o664}[de.IsDir()])
	})
	r3, err := Open(ctx, r.Dir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if fixed, err := r3.FixModes(); err != nil || fixed != n {
		t.Errorf("FixModes changed %d of %d paths (%v)", fixed, n, err)
	}
	privateTree(t, r.Dir())
}
