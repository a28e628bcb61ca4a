package fusefs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
)

// testRepo makes a repository with n points of one small disk of VM "vm".
func testRepo(t *testing.T, n int) (*blockmap.Repo, []blockmap.Point) {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	if err := blockmap.Init(ctx, dir, blockmap.InitOptions{BlockSize: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	repo, err := blockmap.Open(ctx, dir, blockmap.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	var pts []blockmap.Point
	for i := 0; i < n; i++ {
		pts = append(pts, commitPoint(t, repo, "vm", byte(i+1)))
	}
	return repo, pts
}

// commitPoint commits a point whose 256 KiB disk is filled with fill.
func commitPoint(t *testing.T, repo *blockmap.Repo, vm string, fill byte) blockmap.Point {
	t.Helper()
	ctx := context.Background()
	s, err := repo.BeginPoint(ctx, vm, blockmap.PointOptions{Time: time.Date(2026, 1, 1, int(fill), 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.AddDisk(ctx, "disk0", 256<<10, blockmap.DiskOptions{Full: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(bytes.Repeat([]byte{fill}, 256<<10), 0); err != nil {
		t.Fatal(err)
	}
	p, err := s.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReaderCacheSharesAndBounds(t *testing.T) {
	repo, pts := testRepo(t, 3)
	c := newReaderCache(context.Background(), repoSource{repo}, slog.New(slog.DiscardHandler), 1, 1<<30)
	a, err := c.acquire(pts[0], "disk0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.acquire(pts[0], "disk0")
	if err != nil {
		t.Fatal(err)
	}
	if a != b || a.refs != 2 {
		t.Fatalf("two acquires of one disk: shared %v, refs %d", a == b, a.refs)
	}
	c.release(a)
	c.release(b)
	other, err := c.acquire(pts[1], "disk0")
	if err != nil {
		t.Fatal(err)
	}
	c.release(other)
	// maxIdle 1: the older idle reader was closed.
	if _, err := a.dr.ReadAt(make([]byte, 10), 0); err == nil {
		t.Error("evicted reader still reads")
	}
	if c.idle.Len() != 1 || len(c.entries) != 1 {
		t.Errorf("idle %d entries %d, want 1 and 1", c.idle.Len(), len(c.entries))
	}
	if _, err := c.acquire(pts[0], "nosuchdisk"); !errors.Is(err, blockmap.ErrNotFound) {
		t.Errorf("acquire of a missing disk: %v", err)
	}
	if len(c.entries) != 1 {
		t.Errorf("failed open left an entry: %d entries", len(c.entries))
	}

	// forget closes a reader in use at its last release and refuses new reads.
	held, err := c.acquire(pts[2], "disk0")
	if err != nil {
		t.Fatal(err)
	}
	c.forget(func(k pointKey) bool { return k.Gen == pts[2].Gen })
	buf := make([]byte, 4)
	if _, err := held.dr.ReadAt(buf, 0); err != nil || buf[0] != 3 {
		t.Errorf("reader in use after forget: %v %v (closes at release)", buf, err)
	}
	c.release(held)
	if _, err := held.dr.ReadAt(buf, 0); err == nil {
		t.Error("forgotten reader still reads after its release")
	}
	again, err := c.acquire(pts[2], "disk0")
	if err != nil || again == held {
		t.Errorf("acquire after forget: %v, same entry %v", err, again == held)
	}
	c.release(again)

	// A reader larger than the whole memory budget stays idle when it is
	// the last one released: the next read of an image opened without
	// OPEN borrows it again instead of building its block map anew.
	tight := newReaderCache(context.Background(), repoSource{repo}, slog.New(slog.DiscardHandler), 4, 1)
	big, err := tight.acquire(pts[0], "disk0")
	if err != nil {
		t.Fatal(err)
	}
	tight.release(big)
	if next, err := tight.acquire(pts[0], "disk0"); err != nil || next != big {
		t.Errorf("reader over the budget was closed at its release (%v, same %v)", err, next == big)
	} else {
		tight.release(next)
	}
	small, err := tight.acquire(pts[1], "disk0")
	if err != nil {
		t.Fatal(err)
	}
	tight.release(small)
	if tight.idle.Len() != 1 || tight.idle.Front().Value.(*readerEntry) != small {
		t.Errorf("over the budget, %d idle readers kept, want only the newest", tight.idle.Len())
	}
}

func TestCatalogSeesChangesAndGuardsReads(t *testing.T) {
	repo, pts := testRepo(t, 2)
	ctx := context.Background()
	c := newCatalogCache(ctx, repoSource{repo}, slog.New(slog.DiscardHandler), time.Hour)
	defer c.close()
	if c.watch == nil {
		t.Fatal("no inotify watch on the repository")
	}
	if err := c.load(); err != nil {
		t.Fatal(err)
	}
	k0 := pointKey{"vm", pts[0].Gen}
	if !c.alive(k0) || len(c.current().vms["vm"].points) != 2 {
		t.Fatal("fresh catalog does not show the points")
	}
	// A new point is seen at once, although the poll interval is an hour.
	p3 := commitPoint(t, repo, "vm", 9)
	if v := c.current().vms["vm"]; len(v.points) != 3 || v.points[2].ID != p3.ID {
		t.Errorf("new point not seen: %d points", len(v.points))
	}
	var changes int
	c.onChange = func(old, cur *catalogSnap) { changes++ }
	if _, err := repo.Forget(ctx, "vm", []string{pts[0].ID}, false); err != nil {
		t.Fatal(err)
	}
	if c.alive(k0) {
		t.Error("deleted point still alive for reads")
	}
	// Reads learn of the deletion from catalog.seq alone; the catalog
	// itself is read again by the next directory operation.
	if !c.alive(pointKey{"vm", pts[1].Gen}) || changes != 0 {
		t.Errorf("kept point alive %v, changes %d before a listing", c.alive(pointKey{"vm", pts[1].Gen}), changes)
	}
	if v := c.current().vms["vm"]; len(v.points) != 2 || changes != 1 {
		t.Errorf("after the forget a listing shows %d points, changes %d", len(v.points), changes)
	}
	if c.alive(k0) || !c.alive(pointKey{"vm", pts[1].Gen}) {
		t.Error("after the reload: deleted point alive, or kept point dead")
	}
}

func TestPointReaderAtRefusesDeletedPoint(t *testing.T) {
	repo, pts := testRepo(t, 2)
	ctx := context.Background()
	tr := &tree{ctx: ctx, repo: repoSource{repo}, log: slog.New(slog.DiscardHandler)}
	tr.cat = newCatalogCache(ctx, repoSource{repo}, tr.log, time.Hour)
	defer tr.cat.close()
	tr.readers = newReaderCache(ctx, repoSource{repo}, tr.log, 4, 1<<30)
	tr.cat.onChange = tr.catalogChanged
	if err := tr.cat.load(); err != nil {
		t.Fatal(err)
	}
	r := &pointReaderAt{t: tr, p: pts[0], disk: "disk0"}
	buf := make([]byte, 100)
	if n, err := r.ReadAt(buf, 256<<10-50); n != 50 || err != io.EOF || buf[0] != 1 {
		t.Errorf("read at the end: %d %v %v", n, err, buf[:2])
	}
	if _, err := repo.Forget(ctx, "vm", []string{pts[0].ID}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadAt(buf, 0); !errors.Is(err, ErrPointGone) {
		t.Errorf("read of a deleted point: %v, want ErrPointGone", err)
	}
}
