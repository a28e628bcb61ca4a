package blockmap

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCommitNeedsRoom: a commit whose index entries do not fit on the
// index's filesystem fails with ErrIndexNoRoom, naming the index, before
// it writes any; the session aborts, the point committed before is
// intact and the repository takes the next point once there is room.
// Before, the open's room check (one write's log and memtable) passed and
// Badger's flushes of the tables of 200,000 entries ran off the end of
// the filesystem through memory maps: SIGBUS. Run in a child process (a
// SIGBUS ends the process) on a small tmpfs.
func TestCommitNeedsRoom(t *testing.T) {
	out, child, err := onSmallTmpfs(t, "TestCommitNeedsRoom", "CAIRN_COMMIT_ROOM_DIR", "64m", commitNeedsRoomChild)
	if child {
		return
	}
	if err != nil {
		head := out[:min(len(out), 1500)]
		t.Fatalf("the commit on a nearly full filesystem died: %v\n%s\n%s", err, head, tail(out))
	}
	if !bytes.Contains(out, []byte("refused: ")) {
		t.Fatalf("the child did not see the commit refused:\n%s", tail(out))
	}
}

// commitNeedsRoomChild commits a small point, then a session of a new
// 12.5 GiB disk with 200,000 changed blocks (~15 MiB of index entries) on
// a filesystem filled up to a little more than a write's room.
func commitNeedsRoomChild(t *testing.T, dir string) {
	ctx := context.Background()
	repoDir := filepath.Join(dir, "repo")
	if err := Init(ctx, repoDir, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	r, err := Open(ctx, repoDir, Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	bs := int64(r.cfg.BlockSize)

	small := make([]byte, 16*bs)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range small {
		small[i] = byte(rng.Uint32())
	}
	commit := func(vm, disk string, size int64, write func(*DiskWriter) error) (Point, error) {
		t.Helper()
		s, err := r.BeginPoint(ctx, vm, PointOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w, err := s.AddDisk(ctx, disk, size, DiskOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := write(w); err != nil {
			t.Fatal(err)
		}
		p, err := s.Commit(ctx)
		if err != nil {
			if aerr := s.Abort(ctx); aerr != nil {
				t.Fatalf("abort after %v: %v", err, aerr)
			}
		}
		return p, err
	}
	writeSmall := func(w *DiskWriter) error { return w.WriteBlocks(0, small) }
	first, err := commit("vm", "small", int64(len(small)), writeSmall)
	if err != nil {
		t.Fatal(err)
	}

	// The entries a backup of 200,000 changed blocks records (hashing
	// 12 GiB of blocks to make them would take minutes): random sums,
	// which no compression shrinks.
	const blocks = 200_000
	writeEntries := func(w *DiskWriter) error {
		for b := range uint64(blocks) {
			v := blockValue{kind: kindData, crc: rng.Uint32()}
			for i := range v.sum {
				v.sum[i] = byte(rng.Uint32())
			}
			w.entries = append(w.entries, entry{block: b, val: v})
		}
		return nil
	}
	// Fill the filesystem up to the room of a write and 1 MiB.
	free, err := r.indexFree()
	if err != nil {
		t.Fatal(err)
	}
	room := r.indexRoom() + 1<<20
	if free <= room {
		t.Fatalf("%d bytes free, want more than %d", free, room)
	}
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, bytes.Repeat([]byte{1}, int(free-room)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d bytes free, room of a write %d", room, r.indexRoom())
	_, err = commit("vm", "big", blocks*bs, writeEntries)
	var pe *os.PathError
	if !errors.Is(err, ErrIndexNoRoom) || !errors.As(err, &pe) || pe.Path != filepath.Join(repoDir, "index") ||
		!strings.Contains(err.Error(), "not committed") {
		t.Fatalf("commit of 200,000 entries on a nearly full filesystem: %v; want ErrIndexNoRoom naming the index", err)
	}
	t.Logf("refused: %v", err)

	// Nothing committed changed; with room again the next point commits.
	check := func() {
		t.Helper()
		pts, err := r.Points(ctx, "vm")
		if err != nil || len(pts) != 1 || pts[0].ID != first.ID {
			t.Fatalf("points after the refused commit: %+v %v", pts, err)
		}
		dr, err := r.OpenDisk(ctx, pts[0], "small")
		if err != nil {
			t.Fatal(err)
		}
		defer dr.Close()
		got, err := io.ReadAll(io.NewSectionReader(dr, 0, dr.Size()))
		if err != nil || !bytes.Equal(got, small) {
			t.Fatalf("the committed point reads %d bytes, equal %v, %v", len(got), bytes.Equal(got, small), err)
		}
	}
	check()
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if problems, err := r.Check(ctx); err != nil || len(problems) != 0 {
		t.Fatalf("check after the refused commit: %v %v", problems, err)
	}
	if _, err := commit("vm", "small", int64(len(small)), writeSmall); err != nil {
		t.Fatalf("the next commit with room: %v", err)
	}
}
