package blockmap

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"unsafe"
)

// TestImageFileWrites writes through both paths of imageFile (large
// aligned buffers go direct where the filesystem allows; small writes,
// unaligned buffers and a short tail go through the page cache) from
// several goroutines at once and reads the file back: every byte lands
// where it belongs and holes stay holes.
func TestImageFileWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "1.img")
	im, err := createImageFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("direct I/O: %v (alignment %d/%d)", im.direct != nil, im.align.Mem, im.align.Off)
	const bs = directMinWrite
	backing := make([]byte, 12*bs+2*4096)
	skip := 0
	if r := int(uintptr(unsafe.Pointer(&backing[0])) % 4096); r != 0 {
		skip = 4096 - r
	}
	aligned := backing[skip : skip+10*bs]
	for i := range aligned {
		aligned[i] = byte(i/bs + 1)
	}
	unaligned := backing[skip+10*bs+1 : skip+11*bs+1]
	for i := range unaligned {
		unaligned[i] = 0xEE
	}
	want := make([]byte, 16*bs+777)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	write := func(p []byte, off int64) {
		defer wg.Done()
		if err := im.WriteAt(p, off); err != nil {
			errs <- err
		}
	}
	for b := int64(0); b < 10; b += 2 { // blocks 0,2,4,6,8: direct where possible
		copy(want[b*bs:], aligned[b*bs:(b+1)*bs])
		wg.Add(1)
		go write(aligned[b*bs:(b+1)*bs], b*bs)
	}
	copy(want[11*bs:], unaligned) // buffered: the buffer is not aligned
	wg.Add(1)
	go write(unaligned, 11*bs)
	tail := aligned[:bs+777] // aligned start, unaligned length: split
	copy(want[15*bs:], tail)
	wg.Add(1)
	go write(tail, 15*bs)
	small := aligned[3*bs : 3*bs+64<<10] // aligned but small: buffered
	copy(want[13*bs:], small)
	wg.Add(1)
	go write(small, 13*bs)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if want := int64(bs + 777%int(im.align.Off) + 64<<10); im.direct != nil && im.buffered.Load() != want {
		t.Errorf("%d bytes went through the page cache, want %d (the unaligned buffer, the tail and the small write)", im.buffered.Load(), want)
	}
	if err := im.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := im.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		for i := range want {
			if i >= len(got) || got[i] != want[i] {
				t.Fatalf("image differs at byte %d (file %d bytes, want %d)", i, len(got), len(want))
			}
		}
	}
}

// TestImageFileWritebackKicks writes scattered small blocks (the buffered
// path of an incremental) from several goroutines, enough to start the
// background writeback several times, then syncs and closes (twice): the
// writeback goroutine has ended, and every block reads back as written.
func TestImageFileWritebackKicks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "2.img")
	im, err := createImageFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const bs, blocks, writers = 64 << 10, 4 * writebackEvery / (64 << 10), 8
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, bs)
			for b := w; b < blocks; b += writers {
				for i := range buf {
					buf[i] = byte(b + 1)
				}
				if err := im.WriteAt(buf, int64(3*b)*bs); err != nil { // every third block: holes between
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if im.kick == nil {
		t.Fatalf("%d buffered bytes written and no writeback started (every %d bytes)", im.buffered.Load(), writebackEvery)
	}
	if err := im.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := im.Close(); err != nil {
		t.Fatal(err)
	}
	im.Close() // a second Close (Abort after a failed commit) must not panic
	im.kickDone.Wait()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for b := 0; b < blocks; b++ {
		want := bytes.Repeat([]byte{byte(b + 1)}, bs)
		if !bytes.Equal(got[3*b*bs:(3*b+1)*bs], want) {
			t.Fatalf("block %d does not read back as written", b)
		}
	}
}
