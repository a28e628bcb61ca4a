package blockmap

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// crash drops a session the way a killed process does: its lock goes,
// its files stay as they are, nothing is cleaned up.
func crash(s *Session) {
	for _, w := range s.disks {
		if w.file != nil {
			w.file.Close()
		}
	}
	s.lock.Release()
}

// TestSessionFileSweep crashes sessions at two moments and proves the
// next backup cleans up exactly what it must: a session that wrote blocks
// but never committed leaves no image, no index entry and no session file,
// and its generation is reused; a session file that outlived its committed
// point is removed without touching that point.
func TestSessionFileSweep(t *testing.T) {
	ctx := context.Background()
	r := newTestRepo(t)
	d := &modelDisk{name: "d0", data: make([]byte, 6*testBS+100), changed: map[int64]bool{}}
	for i := range d.data {
		d.data[i] = byte(i % 251)
	}
	first := backup(t, r, "vm", []*modelDisk{d}, true, time.Time{})

	// 1. A session that wrote data and died before Commit.
	s, err := r.BeginPoint(ctx, "vm", PointOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gen := s.Gen()
	if gen != first.Gen+1 {
		t.Fatalf("second session writes generation %d, want %d", gen, first.Gen+1)
	}
	if _, err := os.Stat(r.sessionPath("vm")); err != nil {
		t.Fatalf("no session file while a session is open: %v", err)
	}
	w, err := s.AddDisk(ctx, "d0", int64(len(d.data)), DiskOptions{})
	if err != nil {
		t.Fatal(err)
	}
	junk := bytes.Repeat([]byte{7}, testBS)
	if err := w.WriteBlock(2, junk); err != nil {
		t.Fatal(err)
	}
	image := r.imagePath(w.id, gen)
	crash(s)
	if problems, err := r.Check(ctx); err != nil || len(problems) == 0 {
		t.Fatalf("Check after a crash = %v, %v; want the open session reported", problems, err)
	}

	// The next backup sweeps the leftovers and reuses the generation.
	s2, err := r.BeginPoint(ctx, "vm", PointOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(image); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("delta image of the crashed session still there: %v", err)
	}
	if s2.Gen() != gen {
		t.Fatalf("generation after the sweep = %d, want the crashed one (%d) reused", s2.Gen(), gen)
	}
	w2, err := s2.AddDisk(ctx, "d0", int64(len(d.data)), DiskOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.data[3*testBS] = 0xAA
	if err := w2.WriteBlock(3, d.data[3*testBS:4*testBS]); err != nil {
		t.Fatal(err)
	}
	second, err := s2.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(r.sessionPath("vm")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("session file left after a commit: %v", err)
	}
	if got := readAll(t, r, second, "d0"); !bytes.Equal(got, d.data) {
		t.Fatal("point after the sweep reads wrong bytes (the crashed session's block leaked in?)")
	}
	if problems, err := r.Check(ctx); err != nil || len(problems) != 0 {
		t.Fatalf("Check after the sweep = %v, %v; want clean", problems, err)
	}

	// 2. The process died after the commit but before removing its file.
	stale := sessionRecord{VM: "vm", Gen: second.Gen, PID: 1, Started: time.Now()}
	if err := r.writeSessionFile(stale); err != nil {
		t.Fatal(err)
	}
	s3, err := r.BeginPoint(ctx, "vm", PointOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s3.Gen() != second.Gen+1 {
		t.Fatalf("generation after a stale session file = %d, want %d", s3.Gen(), second.Gen+1)
	}
	if err := s3.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(r.imagePath(w2.id, second.Gen)); err != nil {
		t.Fatalf("the committed point's image was swept: %v", err)
	}
	if got := readAll(t, r, second, "d0"); !bytes.Equal(got, d.data) {
		t.Fatal("committed point damaged by sweeping a stale session file")
	}
	if problems, err := r.Check(ctx); err != nil || len(problems) != 0 {
		t.Fatalf("Check after an abort = %v, %v; want clean", problems, err)
	}
}

// TestSessionFileDamaged gives a clear error, not a panic or a silent
// sweep, when a session file cannot be read.
func TestSessionFileDamaged(t *testing.T) {
	r := newTestRepo(t)
	if err := os.MkdirAll(r.sessionDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.sessionDir(), "vm.json"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := r.BeginPoint(context.Background(), "vm", PointOptions{})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("damaged")) {
		t.Fatalf("BeginPoint with a damaged session file: %v", err)
	}
}

// TestSweepNamesTheWriter: the sweep's log line names what was
// interrupted (a pull, an import, a backup) when the session file says so,
// and a neutral word for session files written before they said it.
func TestSweepNamesTheWriter(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ purpose, want string }{
		{"cairn pull", "sweeping an interrupted pull"},
		{"cairn import", "sweeping an interrupted import"},
		{"cairn backup job 20261206T0100Z-abc", "sweeping an interrupted backup"},
		{"cairn verify --against-source --repair", "sweeping an interrupted write (cairn verify --against-source --repair)"},
		{"", "sweeping an interrupted write"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "repo")
			if err := Init(ctx, dir, InitOptions{BlockSize: testBS}); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			r, err := Open(ctx, dir, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			s, err := r.BeginPoint(ctx, "vm", PointOptions{Purpose: tc.purpose})
			if err != nil {
				t.Fatal(err)
			}
			// The process "dies": its session file stays, with another pid.
			rec, ok, err := r.readSessionFile("vm")
			if err != nil || !ok {
				t.Fatalf("session file: %v %v", ok, err)
			}
			crash(s)
			rec.PID, rec.Purpose = 1, tc.purpose // "": a file written before purposes were kept
			if err := r.writeSessionFile(rec); err != nil {
				t.Fatal(err)
			}
			s2, err := r.BeginPoint(ctx, "vm", PointOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Abort(ctx)
			if !strings.Contains(logs.String(), tc.want) {
				t.Errorf("sweep logged:\n%s\nwant %q", logs.String(), tc.want)
			}
		})
	}
}
