package remote

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestAttachmentsReplicated: a point's attachments travel in its manifest;
// Attachment returns their bytes and Pull recommits them with the same
// names and hashes. A manifest of an older cairn (attachments listed,
// bytes absent) reads as a point without attachments and still pulls; one
// whose attachment bytes do not match the point's record gives ErrCorrupt.
func TestAttachmentsReplicated(t *testing.T) {
	e := newEnv(t, 0)
	repo := testutil.NewRepo(t)
	s, err := repo.BeginPoint(context.Background(), "vm1", blockmap.PointOptions{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.AddDisk(context.Background(), "d0", 1<<20, blockmap.DiskOptions{Full: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(textBytes(64<<10), 0); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"vm/config.json": []byte(`{"version":1}`), "vm/vm1.nvram": textBytes(8 << 10)}
	for n, d := range files {
		if err := s.Attach(n, d); err != nil {
			t.Fatal(err)
		}
	}
	p, err := s.Commit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r := e.open()
	if _, err := r.Replicate(ctx(t), repo, []blockmap.Point{p}, ReplicateOptions{CacheDir: cacheDir(t)}); err != nil {
		t.Fatal(err)
	}
	pts, _, err := r.Points(ctx(t))
	if err != nil || len(pts) != 1 || !reflect.DeepEqual(pts[0].Attachments, p.Attachments) {
		t.Fatalf("remote points %+v %v, want attachments %+v", pts, err, p.Attachments)
	}
	for n, want := range files {
		got, err := r.Attachment(ctx(t), p.VM, p.ID, n)
		if err != nil || string(got) != string(want) {
			t.Fatalf("Attachment %s: %d bytes, %v", n, len(got), err)
		}
	}
	if _, err := r.Attachment(ctx(t), p.VM, p.ID, "vm/none"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing attachment: %v", err)
	}
	repo2 := newRepoAt(t, filepath.Join(t.TempDir(), "r2"))
	q, pulled, err := r.Pull(ctx(t), repo2, p.VM, p.ID)
	if err != nil || !pulled || !reflect.DeepEqual(q.Attachments, p.Attachments) {
		t.Fatalf("pull: %+v %v %v", q.Attachments, pulled, err)
	}
	for n, want := range files {
		if got, err := repo2.Attachment(context.Background(), q, n); err != nil || string(got) != string(want) {
			t.Fatalf("pulled %s: %d bytes, %v", n, len(got), err)
		}
	}

	// rewrite replaces the point's manifest with an edited copy.
	rewrite := func(edit func(m *manifest)) {
		t.Helper()
		name := r.keys.manifestName(p.VM, p.ID)
		m, err := r.manifest(ctx(t), p.VM, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		m.Point.Attachments = p.Attachments
		edit(m)
		data, err := r.sealManifest(name, m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.st.put(ctx(t), pointsPrefix+name, data, putOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rewrite(func(m *manifest) { m.Attachments["vm/config.json"] = []byte(`{"version":2}`) })
	if _, err := r.Attachment(ctx(t), p.VM, p.ID, "vm/config.json"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("altered attachment: %v", err)
	}
	repo3 := newRepoAt(t, filepath.Join(t.TempDir(), "r3"))
	if _, _, err := r.Pull(ctx(t), repo3, p.VM, p.ID); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("pull of an altered attachment: %v", err)
	}
	if got, err := repo3.Points(context.Background(), p.VM); err == nil && len(got) != 0 {
		t.Fatalf("a failed pull committed %+v", got)
	}
	rewrite(func(m *manifest) { m.Attachments = nil }) // an older cairn's manifest
	pts, _, err = r.Points(ctx(t))
	if err != nil || len(pts) != 1 || len(pts[0].Attachments) != 0 {
		t.Fatalf("old manifest: points %+v %v", pts, err)
	}
	q, _, err = r.Pull(ctx(t), repo3, p.VM, p.ID)
	if err != nil || len(q.Attachments) != 0 || len(q.Disks) != 1 {
		t.Fatalf("pull of an old manifest: %+v %v", q, err)
	}
}
