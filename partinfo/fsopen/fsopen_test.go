package fsopen_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/fsopen"
	"github.com/cairnbackup/cairn/partinfo/internal/fixture"
)

// TestOpenEveryPartition builds a GPT disk whose partitions hold ext4,
// XFS, NTFS, FAT32 and swap, then detects and opens each one through
// the dispatcher: the readable ones list a file written by the real
// tools, swap gives an UnreadableError.
func TestOpenEveryPartition(t *testing.T) {
	testutil.RequireTools(t, "sgdisk", "mkfs.ext4", "mkfs.xfs", "mkntfs", "mkfs.vfat", "mkswap", "mcopy")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "hello.txt"), []byte("hello from cairn\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "disk.img")
	const mib = 1 << 20
	fixture.Image(t, img, 800*mib)
	fixture.Run(t, nil, "sgdisk",
		"-n", "1:1M:+64M", "-t", "1:8300",
		"-n", "2:0:+320M", "-t", "2:8300",
		"-n", "3:0:+64M", "-t", "3:0700",
		"-n", "4:0:+64M", "-t", "4:0700",
		"-n", "5:0:+16M", "-t", "5:8200", img)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tab, err := partinfo.ReadTable(f, 800*mib)
	if err != nil || len(tab.Partitions) != 5 {
		t.Fatalf("table: %+v, %v", tab, err)
	}
	// Each partition is formatted in a file of its own and copied in.
	build := func(p partinfo.Partition, mk func(part string)) {
		part := filepath.Join(dir, p.Label()+".img")
		fixture.Image(t, part, p.Size)
		mk(part)
		fixture.Run(t, nil, "dd", "if="+part, "of="+img, "bs=1M", "seek="+itoa(p.Start/mib), "conv=notrunc,sparse", "status=none")
		os.Remove(part)
	}
	build(tab.Partitions[0], func(part string) {
		fixture.Run(t, nil, "mkfs.ext4", "-q", "-F", "-d", src, part)
	})
	build(tab.Partitions[1], func(part string) {
		// An mkfs.xfs prototype file populates the filesystem without a mount.
		proto := filepath.Join(dir, "proto")
		spec := "/dev/null\n0 0\nd--755 0 0\nhello.txt ---644 0 0 " + filepath.Join(src, "hello.txt") + "\n$\n"
		if err := os.WriteFile(proto, []byte(spec), 0o644); err != nil {
			t.Fatal(err)
		}
		fixture.Run(t, nil, "mkfs.xfs", "-q", "-f", "-p", proto, part)
	})
	build(tab.Partitions[2], func(part string) {
		fixture.Run(t, nil, "mkntfs", "-F", "-Q", "-q", part)
		fixture.Run(t, nil, "ntfscp", part, filepath.Join(src, "hello.txt"), "hello.txt")
	})
	build(tab.Partitions[3], func(part string) {
		fixture.Run(t, nil, "mkfs.vfat", "-F", "32", part)
		fixture.Run(t, []string{"MTOOLS_SKIP_CHECK=1"}, "mcopy", "-i", part, filepath.Join(src, "hello.txt"), "::/")
	})
	build(tab.Partitions[4], func(part string) { fixture.Run(t, nil, "mkswap", part) })

	wantTypes := []string{"ext4", "xfs", "ntfs", "fat32", "swap"}
	for i, p := range tab.Partitions {
		fsys, d, err := fsopen.OpenPartition(f, p)
		if d.Type != wantTypes[i] {
			t.Errorf("%s: detected %q, want %q", p.Label(), d.Type, wantTypes[i])
			continue
		}
		if d.Type == "swap" {
			var u *partinfo.UnreadableError
			if !errors.As(err, &u) || !strings.Contains(u.Error(), "swap") {
				t.Errorf("swap: %v, want an UnreadableError", err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s (%s): open: %v", p.Label(), d.Type, err)
			continue
		}
		b, err := fs.ReadFile(partinfo.AsFS(fsys), "hello.txt")
		if err != nil || string(b) != "hello from cairn\n" {
			t.Errorf("%s (%s): hello.txt = %q, %v", p.Label(), d.Type, b, err)
		}
		if info := fsys.Info(); info.Type != d.Type {
			t.Errorf("%s: Info().Type %q, detected %q", p.Label(), info.Type, d.Type)
		}
	}
}

func itoa(n int64) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

func TestUnreadableKindsExplainThemselves(t *testing.T) {
	for _, typ := range []string{"lvm2", partinfo.TypeMDMember, "bitlocker", "luks", "refs", "ldm", "swap", "iso9660", "unknown"} {
		_, err := fsopen.Open(strings.NewReader(""), 0, 0, partinfo.Detection{Type: typ})
		var u *partinfo.UnreadableError
		if !errors.As(err, &u) {
			t.Errorf("%s: %v, want *UnreadableError", typ, err)
			continue
		}
		if u.What == "" || u.Why == "" || !strings.Contains(u.Error(), u.Why) {
			t.Errorf("%s: thin message %q", typ, u.Error())
		}
	}
}

func TestCorruptVolumeGivesCleanError(t *testing.T) {
	zero := strings.NewReader(strings.Repeat("\x00", 1<<20))
	for _, typ := range []string{"ext4", "xfs", "ntfs", "fat16", "exfat", "btrfs"} {
		_, err := fsopen.Open(zero, 0, 1<<20, partinfo.Detection{Type: typ})
		if err == nil {
			t.Errorf("%s over zeros opened", typ)
		}
	}
}
