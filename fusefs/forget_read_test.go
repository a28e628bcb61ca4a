package fusefs

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestMountReadsWhileForgetAndPrune: readers loop over the disk images of
// every point through a real FUSE mount, dropping the page cache before
// each read, and listers walk the tree, while another repository handle
// (another process, as far as the index is concerned) forgets and prunes
// those points. No read may ever succeed with other bytes than the
// point's: a reader of a deleted point gets its bytes or an error. Bytes
// released by the deletion are never logged as corruption. (Issue #12,
// item 2.)
func TestMountReadsWhileForgetAndPrune(t *testing.T) {
	testutil.RequireFUSE(t)
	ctx := context.Background()
	const bs = 64 << 10
	const blocks = 48
	dir := filepath.Join(t.TempDir(), "repo")
	if err := blockmap.Init(ctx, dir, blockmap.InitOptions{BlockSize: bs}); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	writer, err := blockmap.Open(ctx, dir, blockmap.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	// Eight points; each changes a third of the blocks of the one before,
	// so deletions punch single blocks out of images that stay.
	rng := rand.New(rand.NewPCG(2, 12))
	cur := make([]byte, blocks*bs)
	for i := range cur {
		cur[i] = byte(rng.Uint32()) | 1
	}
	want := map[string][]byte{} // point id -> disk bytes
	var pts []blockmap.Point
	for i := 0; i < 8; i++ {
		if i > 0 {
			for b := 0; b < blocks; b++ {
				if rng.IntN(3) == 0 {
					for j := b * bs; j < (b+1)*bs; j++ {
						cur[j] = byte(rng.Uint32()) | 1
					}
				}
			}
		}
		s, err := writer.BeginPoint(ctx, "vm", blockmap.PointOptions{Time: time.Date(2026, 1, 1, i, 0, 0, 0, time.UTC)})
		if err != nil {
			t.Fatal(err)
		}
		w, err := s.AddDisk(ctx, "disk0", int64(len(cur)), blockmap.DiskOptions{Full: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.WriteAt(cur, 0); err != nil {
			t.Fatal(err)
		}
		p, err := s.Commit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pts = append(pts, p)
		want[p.ID] = bytes.Clone(cur)
	}

	mountRepo, err := blockmap.Open(ctx, dir, blockmap.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer mountRepo.Close()
	logs := &requestLog{} // any concurrent log sink
	mnt := t.TempDir()
	srv, err := Mount(ctx, mountRepo, mnt, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Unmount(true, 5*time.Second) })

	var (
		stop                         atomic.Bool
		good, refused, wrong, listed atomic.Int64
		wg                           sync.WaitGroup
		firstWrong                   atomic.Value
	)
	for r := 0; r < 4; r++ {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 7))
			for !stop.Load() {
				p := pts[rng.IntN(len(pts))]
				f, err := os.Open(filepath.Join(mnt, "vm", p.ID, "disks", "disk0.img"))
				if err != nil {
					refused.Add(1)
					continue
				}
				for i := 0; i < 16 && !stop.Load(); i++ {
					var off, n int64
					switch rng.IntN(3) {
					case 0: // whole blocks
						off, n = int64(rng.IntN(blocks-4))*bs, int64(1+rng.IntN(4))*bs
					case 1: // part of a block
						off, n = int64(rng.IntN(blocks*bs-4096)), 4096
					default: // across blocks
						off, n = int64(rng.IntN(blocks*bs-3*bs)), int64(bs+rng.IntN(2*bs))
					}
					// Drop the page cache of the file: every read asks the mount.
					_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
					buf := make([]byte, n)
					got, err := f.ReadAt(buf, off)
					if err != nil {
						refused.Add(1)
						break
					}
					if !bytes.Equal(buf[:got], want[p.ID][off:off+int64(got)]) {
						wrong.Add(1)
						firstWrong.CompareAndSwap(nil, fmt.Sprintf("point %s offset %d length %d", p.ID, off, got))
						continue
					}
					good.Add(1)
				}
				f.Close()
			}
		})
	}
	for l := 0; l < 2; l++ {
		wg.Go(func() {
			for !stop.Load() {
				filepath.WalkDir(filepath.Join(mnt, "vm"), func(path string, d fs.DirEntry, err error) error {
					if err == nil {
						listed.Add(1)
					}
					return nil
				})
			}
		})
	}
	// Let the readers warm up (every point verified once), then delete.
	for good.Load() < 200 {
		time.Sleep(10 * time.Millisecond)
	}
	order := []int{0, 3, 5, 1}
	for _, i := range order {
		if _, err := writer.Forget(ctx, "vm", []string{pts[i].ID}, false); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := writer.Prune(ctx, "vm", blockmap.Policy{KeepLast: 1}, false); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	t.Logf("reads: %d right, %d refused, %d wrong; %d entries listed", good.Load(), refused.Load(), wrong.Load(), listed.Load())
	if wrong.Load() > 0 {
		t.Fatalf("%d reads succeeded with wrong bytes (first: %v)", wrong.Load(), firstWrong.Load())
	}
	if refused.Load() == 0 {
		t.Error("no read was refused: the deletions did not overlap the reads")
	}
	logs.mu.Lock()
	logged := logs.buf.String()
	logs.mu.Unlock()
	if strings.Contains(logged, "corrupt=true") || strings.Contains(logged, blockmap.ErrCorrupt.Error()) {
		t.Errorf("released bytes were logged as corruption:\n%s", logged)
	}
	// The kept point still reads whole and right.
	last := pts[len(pts)-1]
	got, err := os.ReadFile(filepath.Join(mnt, "vm", last.ID, "disks", "disk0.img"))
	if err != nil || !bytes.Equal(got, want[last.ID]) {
		t.Fatalf("kept point after the deletions: %v", err)
	}
}
