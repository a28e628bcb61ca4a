package nbdserve

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// fixture: a point of a 64 MiB disk with data at 10-13 MiB and 700-703
// x 64 KiB, holes elsewhere; the same bytes as a plain raw file.
func fixture(t *testing.T) (*blockmap.DiskReader, string) {
	t.Helper()
	ctx := context.Background()
	repo := testutil.NewRepo(t)
	raw := filepath.Join(t.TempDir(), "disk.raw")
	const size = 64 << 20
	img := make([]byte, size)
	rand.Read(img[10<<20 : 13<<20])
	rand.Read(img[700<<16 : 703<<16])
	if err := os.WriteFile(raw, img, 0o644); err != nil {
		t.Fatal(err)
	}
	// make the raw file sparse too, so qemu-img compare has a twin
	if out, err := exec.Command("fallocate", "--dig-holes", raw).CombinedOutput(); err != nil {
		t.Logf("fallocate --dig-holes: %v %s", err, out)
	}
	s, err := repo.BeginPoint(ctx, "vm", blockmap.PointOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.AddDisk(ctx, "d0", size, blockmap.DiskOptions{Full: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(img, 0); err != nil {
		t.Fatal(err)
	}
	p, err := s.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dr, err := repo.OpenDisk(ctx, p, "d0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dr.Close() })
	return dr, raw
}

func serve(t *testing.T, exp *Export) string {
	t.Helper()
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "nbd.sock"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- exp.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "nbd+unix:///?socket=" + ln.Addr().String()
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// TestExportReadOnly: qemu-img compare, nbdinfo --map (holes), nbdcopy,
// several clients at once, a client that hangs up mid-request, and
// refused writes.
func TestExportReadOnly(t *testing.T) {
	testutil.RequireTools(t, "qemu-img", "qemu-io", "nbdinfo", "nbdcopy")
	dr, raw := fixture(t)
	exp, err := NewExport(dr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	uri := serve(t, exp)
	run(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", raw, uri)

	m := run(t, "nbdinfo", "--map", uri)
	want := []string{"0    10485760    3", "10485760     3145728    0", "13631488    32243712    3", "45875200      196608    0", "46071808    21037056    3"}
	for _, w := range want {
		if !strings.Contains(strings.Join(strings.Fields(m), " "), strings.Join(strings.Fields(w), " ")) {
			t.Errorf("nbdinfo --map lacks %q:\n%s", w, m)
		}
	}

	// several clients at once
	var wg sync.WaitGroup
	dir := t.TempDir()
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := filepath.Join(dir, "copy"+string(rune('0'+i)))
			if b, err := exec.Command("nbdcopy", uri, out).CombinedOutput(); err != nil {
				t.Errorf("nbdcopy %d: %v %s", i, err, b)
				return
			}
			if b, err := exec.Command("cmp", out, raw).CombinedOutput(); err != nil {
				t.Errorf("copy %d differs: %s", i, b)
			}
		}()
	}
	wg.Wait()

	// a client that disconnects in the middle of a 32 MiB read
	sock := strings.TrimPrefix(uri, "nbd+unix:///?socket=")
	for range 3 {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		hs := make([]byte, 18)
		if _, err := io.ReadFull(c, hs); err != nil {
			t.Fatal(err)
		}
		msg := binary.BigEndian.AppendUint32(nil, clientFlagFixedNewstyle|clientFlagNoZeroes)
		msg = binary.BigEndian.AppendUint64(msg, magicOption)
		msg = binary.BigEndian.AppendUint32(msg, optExportName)
		msg = binary.BigEndian.AppendUint32(msg, 0)
		c.Write(msg)
		io.ReadFull(c, make([]byte, 10))
		rq := binary.BigEndian.AppendUint32(nil, magicRequest)
		rq = binary.BigEndian.AppendUint16(rq, 0)
		rq = binary.BigEndian.AppendUint16(rq, cmdRead)
		rq = binary.BigEndian.AppendUint64(rq, 1)
		rq = binary.BigEndian.AppendUint64(rq, 0)
		rq = binary.BigEndian.AppendUint32(rq, 32<<20)
		c.Write(rq)
		c.Read(make([]byte, 100))
		c.Close()
	}
	run(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", raw, uri)

	// writes are refused
	if out, err := exec.Command("qemu-io", "-f", "raw", "-c", "write -P 0xab 0 64k", uri).CombinedOutput(); err == nil && !strings.Contains(string(out), "failed") {
		t.Errorf("a write to a read-only export succeeded: %s", out)
	}
	run(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", raw, uri)
}

// TestExportOverlay: writes land in the overlay file only; reads see
// them; the point is unchanged; a new export on the same overlay sees
// the earlier writes; block status reports written areas as data.
func TestExportOverlay(t *testing.T) {
	testutil.RequireTools(t, "qemu-img", "qemu-io", "nbdinfo")
	dr, raw := fixture(t)
	ovPath := filepath.Join(t.TempDir(), "overlay")
	exp, err := NewExport(dr, Options{Overlay: ovPath})
	if err != nil {
		t.Fatal(err)
	}
	uri := serve(t, exp)
	// an unaligned write inside data, and a write inside a hole
	run(t, "qemu-io", "-f", "raw", "-c", "write -P 0xab 10486272 1000", "-c", "write -P 0xcd 33554432 65536", "-c", "flush", uri)
	want, _ := os.ReadFile(raw)
	copy(want[10486272:10486272+1000], bytes.Repeat([]byte{0xab}, 1000))
	copy(want[32<<20:32<<20+65536], bytes.Repeat([]byte{0xcd}, 65536))
	got := make([]byte, len(want))
	if _, err := exp.ov.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("reads through the overlay do not show the writes")
	}
	// the point did not change
	pb := make([]byte, len(want))
	if _, err := dr.ReadAt(pb, 0); err != nil {
		t.Fatal(err)
	}
	orig, _ := os.ReadFile(raw)
	if !bytes.Equal(pb, orig) {
		t.Fatal("the point changed")
	}
	m := run(t, "nbdinfo", "--map", uri)
	if !strings.Contains(strings.Join(strings.Fields(m), " "), "33554432 65536 0 data") {
		t.Errorf("written hole not reported as data:\n%s", m)
	}
	if err := exp.Close(); err != nil {
		t.Fatal(err)
	}
	// the overlay is reusable: a new export shows the same bytes
	exp2, err := NewExport(dr, Options{Overlay: ovPath})
	if err != nil {
		t.Fatal(err)
	}
	defer exp2.Close()
	got2 := make([]byte, len(want))
	if _, err := exp2.ov.ReadAt(got2, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got2, want) {
		t.Fatal("a reopened overlay lost writes")
	}
	// an overlay of another size is refused
	os.Truncate(ovPath, 1<<20)
	if _, err := NewExport(dr, Options{Overlay: ovPath}); err == nil {
		t.Fatal("an overlay of the wrong size was accepted")
	}
}
