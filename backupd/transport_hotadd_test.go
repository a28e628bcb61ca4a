package backupd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd/vsphere"
)

// fakeDevTree is a /dev/disk/by-id and /sys/class/scsi_host in a temp
// directory: the part of HotAdd that needs a real ESXi proxy VM.
func fakeDevTree(t *testing.T) (deviceSearch, string) {
	t.Helper()
	dir := t.TempDir()
	s := deviceSearch{byID: filepath.Join(dir, "by-id"), scsiHosts: filepath.Join(dir, "scsi_host"),
		rescanAfter: 300 * time.Millisecond, timeout: 5 * time.Second}
	for _, h := range []string{"host0", "host1"} {
		if err := os.MkdirAll(filepath.Join(s.scsiHosts, h), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(s.scsiHosts, h, "scan"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(s.byID, 0o755); err != nil {
		t.Fatal(err)
	}
	devs := filepath.Join(dir, "dev")
	if err := os.MkdirAll(devs, 0o755); err != nil {
		t.Fatal(err)
	}
	return s, devs
}

// link adds a by-id entry pointing at a new device file.
func link(t *testing.T, s deviceSearch, devs, name, dev string) string {
	t.Helper()
	target := filepath.Join(devs, dev)
	if err := os.WriteFile(target, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(s.byID, name)); err != nil {
		t.Fatal(err)
	}
	return target
}

func TestFindDevice(t *testing.T) {
	disk := vsphere.HotAdded{FileName: "[ds1] vm/vm.vmdk", UUID: "6000C291-1b5a-2c3d-4e5f-0123456789AB"}
	const wwn = "wwn-0x6000c2911b5a2c3d4e5f0123456789ab"

	t.Run("present, partitions and other disks ignored", func(t *testing.T) {
		s, devs := fakeDevTree(t)
		link(t, s, devs, "wwn-0x6000c29aaaaaaaaaaaaaaaaaaaaaaaaa", "sdb")
		link(t, s, devs, wwn+"-part1", "sdc1")
		want := link(t, s, devs, wwn, "sdc")
		got, err := findDevice(context.Background(), s, disk)
		if err != nil || got != want {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
	})

	t.Run("appears late, after a rescan", func(t *testing.T) {
		s, devs := fakeDevTree(t)
		var want string
		done := make(chan struct{})
		go func() {
			defer close(done)
			// udev makes the link only once the hosts were asked to rescan.
			for {
				b, _ := os.ReadFile(filepath.Join(s.scsiHosts, "host1", "scan"))
				if strings.TrimSpace(string(b)) == "- - -" {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			want = filepath.Join(devs, "sdd")
			os.WriteFile(want, nil, 0o644)
			os.Symlink(want, filepath.Join(s.byID, "scsi-3"+strings.TrimPrefix(wwn, "wwn-0x")))
		}()
		got, err := findDevice(context.Background(), s, disk)
		<-done
		if err != nil || got != want {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
		for _, h := range []string{"host0", "host1"} {
			if b, _ := os.ReadFile(filepath.Join(s.scsiHosts, h, "scan")); strings.TrimSpace(string(b)) != "- - -" {
				t.Errorf("%s was not asked to rescan: %q", h, b)
			}
		}
	})

	t.Run("never appears", func(t *testing.T) {
		s, _ := fakeDevTree(t)
		s.timeout = 700 * time.Millisecond
		_, err := findDevice(context.Background(), s, disk)
		if err == nil || !strings.Contains(err.Error(), "disk.EnableUUID") || !strings.Contains(err.Error(), disk.UUID) {
			t.Fatalf("got %v, want an error naming the UUID and disk.EnableUUID", err)
		}
	})

	t.Run("cancelled", func(t *testing.T) {
		s, _ := fakeDevTree(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := findDevice(ctx, s, disk); err == nil || !strings.Contains(err.Error(), "context canceled") {
			t.Fatalf("got %v, want context canceled", err)
		}
	})

	t.Run("no uuid", func(t *testing.T) {
		s, _ := fakeDevTree(t)
		if _, err := findDevice(context.Background(), s, vsphere.HotAdded{FileName: "x.vmdk"}); err == nil || !strings.Contains(err.Error(), "no UUID") {
			t.Fatalf("got %v", err)
		}
	})
}
