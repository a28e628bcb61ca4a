package test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
)

// mountGen is one generation of a generated disk: the committed point and
// the source image it was written from.
type mountGen struct {
	point blockmap.Point
	src   string // sparse raw image with the same content
	sha   string
}

// mountDiskGen writes generations of one disk of one VM: the first in full,
// then incrementals that change a fraction of the blocks (to random data,
// half-zero blocks or zeros). It keeps the source image of each generation.
type mountDiskGen struct {
	t       testing.TB
	repo    *blockmap.Repo
	vm      string
	disk    string
	size    int64
	bs      int64
	cur     []byte
	rng     *rand.Rand
	srcDir  string
	when    time.Time
	written int
}

func newMountDiskGen(t testing.TB, repo *blockmap.Repo, vm, disk string, size int64, seed uint64) *mountDiskGen {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "src-"+vm)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &mountDiskGen{t: t, repo: repo, vm: vm, disk: disk, size: size, bs: int64(repo.BlockSize()),
		cur: make([]byte, size), rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), srcDir: dir,
		when: time.Date(2026, 11, 1, 1, 0, 0, 0, time.UTC)}
}

// fillBlock gives block b new content: random, half random, or zero.
func (g *mountDiskGen) fillBlock(b int64, zeroShare float64) {
	start := b * g.bs
	blk := g.cur[start:min(start+g.bs, g.size)]
	r := g.rng.Float64()
	switch {
	case r < zeroShare:
		clear(blk)
	case r < zeroShare+0.1:
		clear(blk)
		mountFillRandom(g.rng, blk[:len(blk)/2])
	default:
		mountFillRandom(g.rng, blk)
	}
}

func mountFillRandom(rng *rand.Rand, p []byte) {
	for i := 0; i+8 <= len(p); i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8; j++ {
			p[i+j] = byte(v >> (8 * j))
		}
	}
	for i := len(p) &^ 7; i < len(p); i++ {
		p[i] = byte(rng.Uint32())
	}
}

// next writes one more generation (changed is the share of blocks that
// change; the first generation is always full) and commits it.
func (g *mountDiskGen) next(ctx context.Context, changed float64) mountGen {
	g.t.Helper()
	nblocks := (g.size + g.bs - 1) / g.bs
	full := g.written == 0
	var blocks []int64
	for b := int64(0); b < nblocks; b++ {
		if full || g.rng.Float64() < changed {
			g.fillBlock(b, 0.4)
			blocks = append(blocks, b)
		}
	}
	g.written++
	g.when = g.when.Add(time.Hour)
	s, err := g.repo.BeginPoint(ctx, g.vm, blockmap.PointOptions{Time: g.when, Consistency: blockmap.ConsistencyImported})
	if err != nil {
		g.t.Fatalf("begin point: %v", err)
	}
	w, err := s.AddDisk(ctx, g.disk, g.size, blockmap.DiskOptions{Full: full})
	if err != nil {
		s.Abort(ctx)
		g.t.Fatalf("add disk: %v", err)
	}
	zero := make([]byte, g.bs)
	for _, b := range blocks {
		start := b * g.bs
		blk := g.cur[start:min(start+g.bs, g.size)]
		if full && bytes.Equal(blk, zero[:len(blk)]) {
			continue // a full point's unwritten blocks are zero
		}
		if _, err := w.WriteAt(blk, start); err != nil {
			s.Abort(ctx)
			g.t.Fatalf("write block %d: %v", b, err)
		}
	}
	p, err := s.Commit(ctx)
	if err != nil {
		s.Abort(ctx)
		g.t.Fatalf("commit: %v", err)
	}
	return mountGen{point: p, src: g.writeSource(p.ID), sha: mountSHA256(g.cur)}
}

// writeSource saves the current content as a sparse file.
func (g *mountDiskGen) writeSource(id string) string {
	g.t.Helper()
	path := filepath.Join(g.srcDir, id+".raw")
	f, err := os.Create(path)
	if err != nil {
		g.t.Fatal(err)
	}
	defer f.Close()
	zero := make([]byte, g.bs)
	for off := int64(0); off < g.size; off += g.bs {
		blk := g.cur[off:min(off+g.bs, g.size)]
		if bytes.Equal(blk, zero[:len(blk)]) {
			continue
		}
		if _, err := f.WriteAt(blk, off); err != nil {
			g.t.Fatal(err)
		}
	}
	if err := f.Truncate(g.size); err != nil {
		g.t.Fatal(err)
	}
	return path
}

func mountSHA256(p []byte) string {
	s := sha256.Sum256(p)
	return hex.EncodeToString(s[:])
}

func mountSHA256File(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	if _, err := io.CopyBuffer(h, f, buf); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
