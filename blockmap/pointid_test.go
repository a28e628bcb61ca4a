package blockmap

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// TestBeginPointWithID: a session given an id commits the point under it,
// and a second session asking for an id the VM holds fails at once with
// ErrPointExists (two pulls of one point at once commit it once).
func TestBeginPointWithID(t *testing.T) {
	repo := newTestRepo(t)
	when := time.Date(2026, 12, 6, 11, 0, 0, 0, time.UTC)
	s, err := repo.BeginPoint(context.Background(), "v", PointOptions{ID: "2026-12-06T11-00-00Z-2", Time: when})
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.AddDisk(context.Background(), "d0", 1<<20, DiskOptions{Full: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(bytes.Repeat([]byte{7}, testBS), 0); err != nil {
		t.Fatal(err)
	}
	p, err := s.Commit(context.Background())
	if err != nil || p.ID != "2026-12-06T11-00-00Z-2" {
		t.Fatalf("commit: %v, id %q", err, p.ID)
	}
	if _, err := repo.BeginPoint(context.Background(), "v", PointOptions{ID: p.ID, Time: when}); !errors.Is(err, ErrPointExists) {
		t.Fatalf("second session of id %s: %v, want ErrPointExists", p.ID, err)
	}
	for _, bad := range []string{"latest", "a/b", ".."} {
		if _, err := repo.BeginPoint(context.Background(), "v", PointOptions{ID: bad}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("id %q: %v, want ErrInvalid", bad, err)
		}
	}
	// The VM's lock was released by every refusal.
	s, err = repo.BeginPoint(context.Background(), "v", PointOptions{Time: when})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Abort(context.Background())
}
