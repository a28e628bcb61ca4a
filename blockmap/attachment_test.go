package blockmap

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// TestAttachments: attachments are committed with their point, read back
// unchanged, absent from an aborted point, refused when badly named, and
// removed with their point.
func TestAttachments(t *testing.T) {
	ctx := context.Background()
	r := newTestRepo(t)
	commit := func(att map[string][]byte, abort bool) Point {
		t.Helper()
		s, err := r.BeginPoint(ctx, "vm", PointOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w, err := s.AddDisk(ctx, "d0", 2*testBS, DiskOptions{Full: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteBlock(0, bytes.Repeat([]byte{7}, testBS)); err != nil {
			t.Fatal(err)
		}
		for n, d := range att {
			if err := s.Attach(n, d); err != nil {
				t.Fatal(err)
			}
		}
		if abort {
			if err := s.Abort(ctx); err != nil {
				t.Fatal(err)
			}
			return Point{}
		}
		p, err := s.Commit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := []byte(`{"name":"vm"}`)
	nvram := bytes.Repeat([]byte{0xAB}, 100000)
	p1 := commit(map[string][]byte{"vm/config.json": cfg, "vm/vm.nvram": nvram}, false)
	commit(map[string][]byte{"vm/config.json": []byte("aborted")}, true)
	p2 := commit(nil, false)

	pts, err := r.Points(ctx, "vm")
	if err != nil || len(pts) != 2 {
		t.Fatalf("points %v %v", pts, err)
	}
	if got := pts[0].Attachments; len(got) != 2 || got[0].Name != "vm/config.json" || got[0].Size != int64(len(cfg)) || got[1].Name != "vm/vm.nvram" {
		t.Fatalf("attachments of the first point: %+v", got)
	}
	if len(pts[1].Attachments) != 0 {
		t.Fatalf("second point has attachments %+v", pts[1].Attachments)
	}
	for name, want := range map[string][]byte{"vm/config.json": cfg, "vm/vm.nvram": nvram} {
		got, err := r.Attachment(ctx, pts[0], name)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("attachment %s: %d bytes, %v", name, len(got), err)
		}
	}
	if _, err := r.Attachment(ctx, p2, "vm/config.json"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing attachment: %v", err)
	}

	s, err := r.BeginPoint(ctx, "vm", PointOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "a/b/c", "../x", "vm/..", "/abs"} {
		if err := s.Attach(bad, nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("Attach(%q): %v", bad, err)
		}
	}
	if err := s.Attach("big", make([]byte, MaxAttachmentSize+1)); !errors.Is(err, ErrInvalid) {
		t.Errorf("oversized attachment: %v", err)
	}
	s.Abort(ctx)

	if _, err := r.Forget(ctx, "vm", []string{p1.ID}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Attachment(ctx, p1, "vm/config.json"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("attachment of a forgotten point: %v", err)
	}
}
