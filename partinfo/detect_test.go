package partinfo_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/internal/fixture"
)

const testUUID = "5d6b2a3c-1f2e-4d5c-9b8a-7f6e5d4c3b2a"

type detectCase struct {
	name  string
	size  int64
	tools []string
	make  func(t *testing.T, img string)
	want  partinfo.Detection // Type always; Label/UUID/Version when set
}

func mkfs(args ...string) func(t *testing.T, img string) {
	return func(t *testing.T, img string) {
		fixture.Run(t, nil, args[0], append(args[1:], img)...)
	}
}

// writeAt returns a maker that writes signature bytes (for formats no
// Linux tool can create: BitLocker, ReFS, and ISO 9660 without genisoimage).
func writeAt(off int64, b []byte) func(t *testing.T, img string) {
	return func(t *testing.T, img string) {
		f, err := os.OpenFile(img, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
}

func detectCases() []detectCase {
	return []detectCase{
		{"ext2", 32 << 20, []string{"mkfs.ext2"}, mkfs("mkfs.ext2", "-q", "-F", "-L", "lab-ext2", "-U", testUUID), partinfo.Detection{Type: "ext2", Label: "lab-ext2", UUID: testUUID}},
		{"ext3", 32 << 20, []string{"mkfs.ext3"}, mkfs("mkfs.ext3", "-q", "-F", "-L", "lab-ext3", "-U", testUUID), partinfo.Detection{Type: "ext3", Label: "lab-ext3", UUID: testUUID}},
		{"ext4", 32 << 20, []string{"mkfs.ext4"}, mkfs("mkfs.ext4", "-q", "-F", "-L", "lab-ext4", "-U", testUUID), partinfo.Detection{Type: "ext4", Label: "lab-ext4", UUID: testUUID}},
		{"ext4-no-csum", 32 << 20, []string{"mkfs.ext4"}, mkfs("mkfs.ext4", "-q", "-F", "-O", "^metadata_csum,^64bit", "-U", testUUID), partinfo.Detection{Type: "ext4", UUID: testUUID}},
		{"xfs", 320 << 20, []string{"mkfs.xfs"}, mkfs("mkfs.xfs", "-q", "-f", "-L", "labxfs", "-m", "uuid="+testUUID), partinfo.Detection{Type: "xfs", Label: "labxfs", UUID: testUUID}},
		{"ntfs", 32 << 20, []string{"mkntfs"}, mkfs("mkntfs", "-F", "-Q", "-q", "-L", "labntfs"), partinfo.Detection{Type: "ntfs"}},
		{"fat12", 4 << 20, []string{"mkfs.vfat"}, mkfs("mkfs.vfat", "-F", "12", "-n", "LABF12", "-i", "1234ABCD"), partinfo.Detection{Type: "fat12", Label: "LABF12", UUID: "1234-ABCD"}},
		{"fat16", 32 << 20, []string{"mkfs.vfat"}, mkfs("mkfs.vfat", "-F", "16", "-n", "LABF16", "-i", "1234ABCD"), partinfo.Detection{Type: "fat16", Label: "LABF16", UUID: "1234-ABCD"}},
		{"fat32", 64 << 20, []string{"mkfs.vfat"}, mkfs("mkfs.vfat", "-F", "32", "-n", "LABF32", "-i", "1234ABCD"), partinfo.Detection{Type: "fat32", Label: "LABF32", UUID: "1234-ABCD"}},
		{"exfat", 32 << 20, nil, exfat, partinfo.Detection{Type: "exfat"}},
		{"btrfs", 128 << 20, []string{"mkfs.btrfs"}, mkfs("mkfs.btrfs", "-q", "-f", "-L", "labbtrfs", "-U", testUUID), partinfo.Detection{Type: "btrfs", Label: "labbtrfs", UUID: testUUID}},
		{"swap", 16 << 20, []string{"mkswap"}, mkfs("mkswap", "-L", "labswap", "-U", testUUID), partinfo.Detection{Type: "swap", Label: "labswap", UUID: testUUID, Version: "1"}},
		{"luks1", 32 << 20, []string{"cryptsetup"}, luks("luks1"), partinfo.Detection{Type: "luks", Version: "LUKS1", UUID: testUUID}},
		{"luks2", 32 << 20, []string{"cryptsetup"}, luks("luks2"), partinfo.Detection{Type: "luks", Version: "LUKS2", UUID: testUUID, Label: "labluks"}},
		{"lvm2", 16 << 20, []string{"pvcreate", "losetup"}, pv, partinfo.Detection{Type: "lvm2", UUID: "abcdef-1234-5678-9abc-def0-1234-567890"}},
		{"bitlocker", 4 << 20, nil, writeAt(0, append([]byte{0xEB, 0x58, 0x90}, "-FVE-FS-"...)), partinfo.Detection{Type: "bitlocker"}},
		{"refs", 4 << 20, nil, writeAt(0, append(append([]byte{0, 0, 0}, "ReFS\x00\x00\x00\x00\x00\x00\x00\x00\x00"...), "FSRS"...)), partinfo.Detection{Type: "refs"}},
		{"iso9660", 4 << 20, nil, writeAt(32768, append([]byte("\x01CD001\x01\x00"), bytes.Repeat([]byte(" "), 32)...)), partinfo.Detection{Type: "iso9660"}},
		{"unknown", 4 << 20, nil, func(*testing.T, string) {}, partinfo.Detection{Type: "unknown"}},
	}
}

// exfat uses mkfs.exfat (Debian exfatprogs) when it is installed and
// otherwise writes an exFAT boot sector's signature, geometry and serial
// by hand, so the case runs locally where the package is missing; under
// CI the tool is required.
func exfat(t *testing.T, img string) {
	if testutil.InCI() {
		testutil.RequireTools(t, "mkfs.exfat")
	}
	if _, err := exec.LookPath("mkfs.exfat"); err == nil {
		fixture.Run(t, nil, "mkfs.exfat", "-L", "labexfat", img)
		return
	}
	t.Log("mkfs.exfat not installed: writing the exFAT boot sector signature by hand")
	b := make([]byte, 512)
	copy(b[3:], "EXFAT   ")
	b[72] = 0x00
	b[73] = 0x00
	b[74] = 0x01 // volume length 65536 sectors = 32 MiB
	b[100], b[101], b[102], b[103] = 0x78, 0x56, 0x34, 0x12
	b[108], b[109] = 9, 3
	b[510], b[511] = 0x55, 0xAA
	writeAt(0, b)(t, img)
}

func luks(kind string) func(t *testing.T, img string) {
	return func(t *testing.T, img string) {
		key := filepath.Join(filepath.Dir(img), "key")
		if err := os.WriteFile(key, []byte("secret passphrase"), 0o600); err != nil {
			t.Fatal(err)
		}
		args := []string{"luksFormat", "--batch-mode", "--type", kind, "--key-file", key,
			"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--uuid", testUUID}
		if kind == "luks2" {
			args = append(args, "--label", "labluks")
		}
		fixture.Run(t, nil, "cryptsetup", append(args, img)...)
	}
}

// pv makes an LVM2 physical volume: pvcreate needs a block device, so the
// image is attached to a loop device first.
func pv(t *testing.T, img string) {
	testutil.RequireRoot(t)
	out, err := exec.Command("losetup", "-f", "--show", img).CombinedOutput()
	if err != nil {
		testutil.Missing(t, fmt.Sprintf("a loop device: %v %s", err, out))
	}
	dev := strings.TrimSpace(string(out))
	defer exec.Command("losetup", "-d", dev).Run()
	fixture.Run(t, nil, "pvcreate", "-ff", "-y", "--norestorefile", "--uuid", "abcdef123456789abcdef01234567890", dev)
}

func TestDetectEachKind(t *testing.T) {
	for _, c := range detectCases() {
		t.Run(c.name, func(t *testing.T) {
			testutil.RequireTools(t, c.tools...)
			img := filepath.Join(t.TempDir(), "vol.img")
			// The volume sits 1 MiB into the file to prove offsets are honoured.
			const off = 1 << 20
			fixture.Image(t, img, c.size)
			c.make(t, img)
			shifted := filepath.Join(t.TempDir(), "shifted.img")
			fixture.Run(t, nil, "sh", "-c", `dd if="$1" of="$2" bs=1M seek=1 conv=sparse status=none`, "sh", img, shifted)
			f, err := os.Open(shifted)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			d := partinfo.Detect(f, off, c.size)
			if d.Type != c.want.Type {
				t.Fatalf("type %q, want %q (%+v)", d.Type, c.want.Type, d)
			}
			if c.want.Label != "" && d.Label != c.want.Label {
				t.Errorf("label %q, want %q", d.Label, c.want.Label)
			}
			if c.want.UUID != "" && d.UUID != c.want.UUID {
				t.Errorf("uuid %q, want %q", d.UUID, c.want.UUID)
			}
			if c.want.Version != "" && d.Version != c.want.Version {
				t.Errorf("version %q, want %q", d.Version, c.want.Version)
			}
			if d.Size <= 0 || d.Size > c.size {
				t.Errorf("size %d outside (0, %d]", d.Size, c.size)
			}
			switch d.Type {
			case "ext2", "ext3", "ext4", "xfs", "btrfs":
				if d.Used <= 0 || d.Free <= 0 || d.Used+d.Free != d.Size && d.Type != "btrfs" {
					t.Errorf("used %d free %d size %d", d.Used, d.Free, d.Size)
				}
			}
			u := partinfo.Unreadable(d)
			readable := map[string]bool{"ext2": true, "ext3": true, "ext4": true, "xfs": true, "ntfs": true, "fat12": true, "fat16": true, "fat32": true, "exfat": true, "btrfs": true}
			if readable[d.Type] != (u == nil) {
				t.Errorf("Unreadable(%s) = %v", d.Type, u)
			}
			if u != nil && (!strings.HasPrefix(u.Error(), "This volume holds") || len(u.Error()) < 80) {
				t.Errorf("ERROR.txt text too thin: %q", u.Error())
			}
		})
	}
}
