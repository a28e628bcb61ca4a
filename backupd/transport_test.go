package backupd

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd/source"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// diskFile writes a 1 MiB disk with a pattern in its first half and
// returns a DiskRef whose datastore "ds" maps to its directory.
func diskFile(t *testing.T) (DiskRef, []byte) {
	t.Helper()
	dir := t.TempDir()
	data := make([]byte, 1<<20)
	for i := range len(data) / 2 {
		data[i] = byte(i % 251)
	}
	if err := os.WriteFile(filepath.Join(dir, "web-flat.img"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	dirs := vsphere.DatastoreDirs{"ds": dir}
	return DiskRef{
		VMRef: "vm-1", VMName: "web", SnapshotRef: "snapshot-1",
		Disk:      vsphere.Disk{Name: "scsi0-0", FileName: "[ds] web-flat.img", Capacity: int64(len(data))},
		LocalPath: func(_ context.Context, f string) (string, error) { return dirs.LocalPath(f) },
	}, data
}

func readAll(t *testing.T, src source.Source) []byte {
	t.Helper()
	got := make([]byte, src.Size())
	if _, err := src.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	return got
}

// Each transport opens a disk from a DiskRef alone, without a job.
func TestTransportsOpenADiskRef(t *testing.T) {
	ctx := context.Background()
	ref, data := diskFile(t)

	t.Run("file", func(t *testing.T) {
		src, err := FileTransport{}.Open(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		if !bytes.Equal(readAll(t, src), data) {
			t.Error("file transport: wrong bytes")
		}
		short := ref
		short.Disk.Capacity = 2 << 20
		if _, err := (FileTransport{}).Open(ctx, short); err == nil || !strings.Contains(err.Error(), "the disk 2097152") {
			t.Errorf("a flat file shorter than the disk: %v", err)
		}
		none := ref
		none.LocalPath = nil
		if _, err := (FileTransport{}).Open(ctx, none); err == nil || !strings.Contains(err.Error(), "no datastore is mounted locally") {
			t.Errorf("no local datastore: %v", err)
		}
	})

	t.Run("hotadd", func(t *testing.T) {
		h := newMemHV(filepath.Dir(must(ref.LocalPath(ctx, ref.Disk.FileName))))
		h.proxy.hv = h
		tr := &HotAddTransport{Proxy: h.proxy, Device: func(_ context.Context, _ string, a vsphere.HotAdded) (string, error) {
			return ref.LocalPath(ctx, a.FileName)
		}}
		src, err := tr.Open(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(readAll(t, src), data) || src.Meta()["transport"] != TransportHotAdd {
			t.Errorf("hotadd transport: wrong bytes or meta %v", src.Meta())
		}
		if err := src.Close(); err != nil {
			t.Fatal(err)
		}
		if strings.Join(h.calls, "|") != "attach [ds] web-flat.img|detach [ds] web-flat.img" {
			t.Errorf("proxy calls %q: want an attach and, on close, a detach", h.calls)
		}
		if _, err := (&HotAddTransport{}).Open(ctx, ref); !errors.Is(err, ErrNoProxyVM) {
			t.Errorf("no proxy: %v", err)
		}
	})

	t.Run("nbd", func(t *testing.T) {
		testutil.RequireTools(t, "qemu-nbd")
		t.Setenv("TMPDIR", t.TempDir())
		tr := &NBDTransport{Command: "qemu-nbd --persistent -k {socket} -f raw -r {disk_local_path}"}
		src, err := tr.Open(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(readAll(t, src), data) || src.Meta()["transport"] != TransportNBD {
			t.Errorf("nbd transport: wrong bytes or meta %v", src.Meta())
		}
		ext, err := src.Allocated(ctx)
		if err != nil || len(ext) == 0 || ext[0].Offset != 0 {
			t.Errorf("allocated %v, %v", ext, err)
		}
		dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), nbdDirPrefix+"*"))
		if len(dirs) != 1 {
			t.Errorf("server directories %v", dirs)
		}
		if err := src.Close(); err != nil {
			t.Fatal(err)
		}
		if dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), nbdDirPrefix+"*")); len(dirs) != 0 {
			t.Errorf("closing left %v", dirs)
		}
		bad := &NBDTransport{Command: "qemu-nbd -k {socket} {server}"}
		if _, err := bad.Open(ctx, ref); err == nil || !strings.Contains(err.Error(), "{server}") {
			t.Errorf("{server} without a server: %v", err)
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
