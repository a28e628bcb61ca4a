package remote

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestSequentialReadAhead reads a remote disk the way a FUSE mount does
// (128 KiB at a time, in order) through a small cache: the bytes equal the
// local disk, blocks are fetched ahead in few large ranged GETs (not one
// GET per read), and no block is fetched twice. Then a pack is altered
// behind cairn's back: every read returns the right bytes or fails with a
// BlockError wrapping ErrCorrupt, never wrong bytes, also for the blocks
// a read-ahead fetched.
func TestSequentialReadAhead(t *testing.T) {
	e := newEnv(t, 0)
	repo := testutil.NewRepo(t)
	rnd := rand.New(rand.NewPCG(5, 6))
	const size = 24 << 20
	p := writePoint(t, repo, "seq", time.Date(2026, 12, 1, 1, 0, 0, 0, time.UTC), []diskSpec{{name: "d0", size: size,
		data: map[int64][]byte{0: randBytes(rnd, 10<<20), 12 << 20: textBytes(4 << 20), 18 << 20: randBytes(rnd, 6<<20)}}})
	r := e.open()
	if _, err := r.Replicate(ctx(t), repo, []blockmap.Point{p}, ReplicateOptions{CacheDir: cacheDir(t)}); err != nil {
		t.Fatal(err)
	}
	lr, err := repo.OpenDisk(ctx(t), p, "d0")
	if err != nil {
		t.Fatal(err)
	}
	defer lr.Close()
	want := readAll(t, lr, size)
	m, err := r.manifest(ctx(t), "seq", p.ID)
	if err != nil {
		t.Fatal(err)
	}
	es, err := r.diskEntries(ctx(t), m, &m.Disks[0])
	if err != nil {
		t.Fatal(err)
	}
	ids := map[ID]bool{}
	for _, e := range es {
		ids[e.ID] = true
	}
	dataBlocks := int64(len(ids)) // distinct blocks: equal ones share a cache entry

	read := func(check func(off int64, got []byte, err error)) (reads int) {
		dr, err := r.OpenDisk(ctx(t), "seq", p.ID, "d0", 16<<20)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 128<<10)
		for off := int64(0); off < size; off += int64(len(buf)) {
			n, err := dr.ReadAt(buf, off)
			if err == io.EOF && n == len(buf) {
				err = nil
			}
			check(off, buf[:n], err)
			reads++
		}
		return reads
	}
	r.blobGets.Store(0)
	r.blobsFetched.Store(0)
	reads := read(func(off int64, got []byte, err error) {
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		if !bytes.Equal(got, want[off:off+int64(len(got))]) {
			t.Fatalf("read at %d: wrong bytes", off)
		}
	})
	gets, fetched := r.blobGets.Load(), r.blobsFetched.Load()
	t.Logf("%d reads of 128 KiB: %d ranged GETs for %d blobs (%d distinct data blocks)", reads, gets, fetched, dataBlocks)
	if fetched != dataBlocks {
		t.Errorf("fetched %d blobs for %d data blocks: want each once", fetched, dataBlocks)
	}
	if gets > int64(reads)/4 {
		t.Errorf("%d ranged GETs for %d sequential reads: no read-ahead", gets, reads)
	}

	// Alter one byte in the middle of every pack.
	c := context.Background()
	for o := range e.s3.ListObjects(c, e.bucket, minio.ListObjectsOptions{Prefix: packPrefix, Recursive: true}) {
		obj, err := e.s3.GetObject(c, e.bucket, o.Key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(obj)
		obj.Close()
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/2] ^= 1
		if _, err := e.s3.PutObject(c, e.bucket, o.Key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	r.SetReadCache(16 << 20) // nothing cached from the first pass
	bad, good := 0, 0
	read(func(off int64, got []byte, err error) {
		var be *BlockError
		switch {
		case err == nil:
			if !bytes.Equal(got, want[off:off+int64(len(got))]) {
				t.Fatalf("read at %d after the damage: wrong bytes returned as good", off)
			}
			good++
		case errors.As(err, &be) && errors.Is(err, ErrCorrupt):
			bad++
		default:
			t.Fatalf("read at %d after the damage: %v, want data or a BlockError", off, err)
		}
	})
	t.Logf("after the damage: %d reads failed, %d read right", bad, good)
	if bad == 0 || good == 0 {
		t.Fatalf("%d reads failed and %d read right: want both", bad, good)
	}
}

// TestReaderMemoryPerBlock: an open remote disk keeps one small entry per
// data block and not the manifest's encoded block map beside it (before:
// 109 bytes a block, 1.7 GiB per TiB of data; now 56).
func TestReaderMemoryPerBlock(t *testing.T) {
	const n = 1 << 18 // 16 GiB of data in 64 KiB blocks
	es := make([]blockEntry, n)
	for i := range es {
		es[i] = blockEntry{Block: int64(i) * 2, Pack: int32(i / 512), Off: uint32(i%512) * 65600, Len: 65577, Raw: 65536}
		es[i].ID[0], es[i].ID[1], es[i].ID[2] = byte(i), byte(i>>8), byte(i>>16)
	}
	m := &manifest{Format: FormatVersion, BlockSize: 64 << 10, Packs: make([]manifestPack, n/512)}
	for i := range m.Packs {
		m.Packs[i] = manifestPack{ID: randomID().String()}
	}
	m.Disks = []manifestDisk{{Name: "d0", Size: int64(n) * 2 * 64 << 10, Blocks: encodeBlocks(es), Count: n}}
	es = nil
	encoded := len(m.Disks[0].Blocks)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := int64(ms.HeapAlloc)
	dr, err := (&Remote{}).openDisk(context.Background(), m, "d0", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	m = nil
	runtime.GC()
	runtime.ReadMemStats(&ms)
	// The encoded map was live before; counted as held unless freed.
	held := int64(ms.HeapAlloc) - before + int64(encoded)
	perBlock := float64(held) / n
	t.Logf("a reader of %d blocks holds %d MiB: %.1f bytes a block, %.2f GiB per TiB of data", n, held>>20, perBlock, perBlock*(1<<24)/(1<<30))
	if perBlock > 64 {
		t.Errorf("a reader holds %.0f bytes a block, want at most 64", perBlock)
	}
	runtime.KeepAlive(dr)
}
