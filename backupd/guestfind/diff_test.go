package guestfind_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/guestfind"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// countingSource counts the bytes read from every disk it opens; noRuns
// hides the disks' block identities (as a remote's disks have none).
type countingSource struct {
	guestfind.Source
	n      *atomic.Int64
	noRuns bool
}

func (s countingSource) OpenDisk(ctx context.Context, p blockmap.Point, disk string) (guestfind.Disk, error) {
	d, err := s.Source.OpenDisk(ctx, p, disk)
	if err != nil {
		return nil, err
	}
	if s.noRuns {
		return plainCountingDisk{d, s.n}, nil
	}
	return countingDisk{plainCountingDisk{d, s.n}}, nil
}

type countingDisk struct{ plainCountingDisk }

type plainCountingDisk struct {
	guestfind.Disk
	n *atomic.Int64
}

func (d plainCountingDisk) ReadAt(p []byte, off int64) (int, error) {
	n, err := d.Disk.ReadAt(p, off)
	d.n.Add(int64(n))
	return n, err
}

// DataRuns passes the block identity through (the shortcut needs it).
func (d countingDisk) DataRuns(fn func(first, n int64, gen uint32) bool) {
	d.Disk.(interface {
		DataRuns(func(first, n int64, gen uint32) bool)
	}).DataRuns(fn)
}

func (d countingDisk) BlockBytes() int64 {
	return d.Disk.(interface{ BlockBytes() int64 }).BlockBytes()
}

// diffFixture: three points of one MBR disk whose p1 holds an ext4 made
// by mkfs.ext4 -d (no mount): P1 with a 6 MiB random file and a small text file, P2 the same
// image with the text's bytes replaced in place (same size, same mtime,
// same inode, other bytes), P3 the P1 image again (the text's block now
// has P3's generation, its bytes are P1's).
func diffFixture(t *testing.T) (*blockmap.Repo, []blockmap.Point, int64) {
	testutil.RequireTools(t, "mkfs.ext4")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "data"), 0o755)
	big := make([]byte, 6<<20)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range big {
		big[i] = byte(rnd.Uint32())
	}
	a := []byte(strings.Repeat("version A of the report. ", 200))
	for name, b := range map[string][]byte{"data/big.bin": big, "report.txt": a, "notes.txt": []byte("notes\n")} {
		if err := os.WriteFile(filepath.Join(src, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img1 := filepath.Join(dir, "p1.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-O", "^inline_data", "-d", src, img1, "32M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	fsBytes, err := os.ReadFile(img1)
	if err != nil {
		t.Fatal(err)
	}
	// An MBR disk whose p1 starts 1 MiB in: the extents' disk offsets
	// include the partition's.
	raw := make([]byte, 1<<20+len(fsBytes))
	copy(raw[1<<20:], fsBytes)
	e := raw[446:462]
	e[4] = 0x83
	binary.LittleEndian.PutUint32(e[8:], 2048)
	binary.LittleEndian.PutUint32(e[12:], uint32(len(fsBytes)/512))
	raw[510], raw[511] = 0x55, 0xaa
	if err := os.WriteFile(img1, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if bytes.Count(raw, a) != 1 {
		t.Fatal("report.txt's bytes are not once in the image")
	}
	img2 := filepath.Join(dir, "p2.img")
	if err := os.WriteFile(img2, bytes.Replace(raw, a, bytes.ToUpper(a), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	repo := testutil.NewRepo(t)
	var pts []blockmap.Point
	for i, img := range []string{img1, img2, img1} {
		p, err := backupd.Import(context.Background(), repo, "vm", []backupd.ImportDisk{{Name: "sda", Source: img}},
			backupd.ImportOptions{Point: blockmap.PointOptions{Time: time.Date(2026, 11, 1+i, 0, 0, 0, 0, time.UTC)}})
		if err != nil {
			t.Fatal(err)
		}
		pts = append(pts, p)
	}
	return repo, pts, int64(len(big))
}

func runDiff(t *testing.T, src guestfind.Source, a, b blockmap.Point, opts guestfind.DiffOptions) ([]guestfind.Change, guestfind.DiffResult) {
	t.Helper()
	var got []guestfind.Change
	res, err := guestfind.Diff(context.Background(), src, a, b, opts, func(c guestfind.Change) error {
		got = append(got, c)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got, res
}

// TestDiffSkipsSharedBlocks: a file rewritten with the same size and
// mtime is found by its content, and the large file whose blocks both
// points share is not read at all (bytes read from the disks counted).
// The same diff without block identities (as from a remote) reads it.
func TestDiffSkipsSharedBlocks(t *testing.T) {
	repo, pts, bigSize := diffFixture(t)
	var n atomic.Int64
	got, res := runDiff(t, countingSource{guestfind.Local(repo), &n, false}, pts[0], pts[1], guestfind.DiffOptions{})
	if len(got) != 1 || got[0].Path != "/report.txt" || got[0].Kind != guestfind.Modified || strings.Join(got[0].Fields, ",") != "content" {
		t.Fatalf("changes %+v, want /report.txt modified: content", got)
	}
	if len(res.Filesystems) != 1 || res.Filesystems[0].State != "compared" || res.Filesystems[0].Name != "sda/p1" {
		t.Errorf("filesystems %+v", res.Filesystems)
	}
	t.Logf("stats %+v, %d bytes read from the disks", res.Stats, n.Load())
	// big.bin's last extent may share a 64 KiB repository block with
	// report.txt: only that block's part of it may be read.
	if n.Load() >= bigSize/2 || res.Stats.BytesRead > 4*64<<10 {
		t.Errorf("big.bin was read: %d bytes read from the disks (it holds %d), %d compared", n.Load(), bigSize, res.Stats.BytesRead)
	}
	// Without block identities every file of equal size is read.
	n.Store(0)
	got, res = runDiff(t, countingSource{guestfind.Local(repo), &n, true}, pts[0], pts[1], guestfind.DiffOptions{})
	if len(got) != 1 || res.Stats.BytesRead < 2*bigSize || n.Load() < 2*bigSize {
		t.Errorf("without block identities: %d changes, %d bytes compared, %d bytes read; want 1 and both >= %d", len(got), res.Stats.BytesRead, n.Load(), 2*bigSize)
	}
}

// TestDiffSameBytesOtherBlocks: P3 holds P1's bytes in blocks of another
// generation: the file is read and reported equal; against P2 it is
// modified.
func TestDiffSameBytesOtherBlocks(t *testing.T) {
	repo, pts, _ := diffFixture(t)
	got, res := runDiff(t, guestfind.Local(repo), pts[0], pts[2], guestfind.DiffOptions{})
	if len(got) != 0 {
		t.Errorf("P1 -> P3: %+v, want no change", got)
	}
	if res.Stats.FilesRead < 1 {
		t.Errorf("P1 -> P3: %d files read, want report.txt at least (its block rewritten)", res.Stats.FilesRead)
	}
	got, _ = runDiff(t, guestfind.Local(repo), pts[1], pts[2], guestfind.DiffOptions{Path: "/report.txt"})
	if len(got) != 1 || got[0].Kind != guestfind.Modified {
		t.Errorf("P2 -> P3 of /report.txt: %+v, want modified", got)
	}
	if _, err := guestfind.Diff(context.Background(), guestfind.Local(repo), pts[0], pts[1], guestfind.DiffOptions{Path: "/nope"},
		func(guestfind.Change) error { return nil }); err == nil || !strings.Contains(err.Error(), "/nope") {
		t.Errorf("a path in neither point: %v, want an error naming it", err)
	}
}

func TestEntropyMarker(t *testing.T) {
	text := []byte(strings.Repeat("the quick brown fox jumps over the lazy dog\n", 100))
	rnd := rand.New(rand.NewPCG(3, 4))
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(rnd.Uint32())
	}
	ht, hr := guestfind.Entropy(text), guestfind.Entropy(random)
	if ht >= guestfind.LowEntropy || hr < guestfind.EncryptedEntropy {
		t.Fatalf("entropy of text %.2f, of random bytes %.2f", ht, hr)
	}
	for _, tc := range []struct {
		before, after float64
		n             int
		want          bool
	}{{ht, hr, 4096, true}, {hr, hr, 4096, false}, {ht, ht, 4096, false}, {ht, hr, 100, false}} {
		if got := guestfind.LooksEncrypted(tc.before, tc.after, tc.n); got != tc.want {
			t.Errorf("LooksEncrypted(%.2f, %.2f, %d) = %v", tc.before, tc.after, tc.n, got)
		}
	}
}
