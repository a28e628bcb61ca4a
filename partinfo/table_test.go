package partinfo_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/internal/fixture"
)

// sfdiskJSON is what `sfdisk --json` prints: the oracle for our parser.
type sfdiskJSON struct {
	Table struct {
		Label      string `json:"label"`
		ID         string `json:"id"`
		Partitions []struct {
			Node     string `json:"node"`
			Start    int64  `json:"start"`
			Size     int64  `json:"size"`
			Type     string `json:"type"`
			UUID     string `json:"uuid"`
			Name     string `json:"name"`
			Bootable bool   `json:"bootable"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

func sfdiskDump(t *testing.T, img string) sfdiskJSON {
	t.Helper()
	var j sfdiskJSON
	if err := json.Unmarshal([]byte(fixture.Run(t, nil, "sfdisk", "--json", img)), &j); err != nil {
		t.Fatal(err)
	}
	return j
}

func readTable(t *testing.T, img string) *partinfo.Table {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	tab, err := partinfo.ReadTable(f, st.Size())
	if err != nil {
		t.Fatalf("ReadTable: %v", err)
	}
	return tab
}

// compareWithSfdisk checks every partition against sfdisk's view.
func compareWithSfdisk(t *testing.T, img string, tab *partinfo.Table) {
	t.Helper()
	j := sfdiskDump(t, img)
	if len(j.Table.Partitions) != len(tab.Partitions) {
		t.Fatalf("%d partitions, sfdisk lists %d: %+v", len(tab.Partitions), len(j.Table.Partitions), tab.Partitions)
	}
	for i, sp := range j.Table.Partitions {
		p := tab.Partitions[i]
		if want := img + itoa(p.Number); sp.Node != want {
			t.Errorf("partition %d: sfdisk node %s, our number %d", i, sp.Node, p.Number)
		}
		if p.Start != sp.Start*512 || p.Size != sp.Size*512 {
			t.Errorf("p%d: start %d size %d, sfdisk %d %d sectors", p.Number, p.Start, p.Size, sp.Start, sp.Size)
		}
		if p.Bootable != sp.Bootable && tab.Type == partinfo.TableMBR {
			t.Errorf("p%d: bootable %v, sfdisk %v", p.Number, p.Bootable, sp.Bootable)
		}
		if tab.Type == partinfo.TableGPT {
			if !strings.EqualFold(p.Type, sp.Type) || !strings.EqualFold(p.GUID, sp.UUID) || p.Name != sp.Name {
				t.Errorf("p%d: type %s guid %s name %q; sfdisk %s %s %q", p.Number, p.Type, p.GUID, p.Name, sp.Type, sp.UUID, sp.Name)
			}
		} else if "0x"+strings.TrimLeft(p.Type[2:], "0") != "0x"+strings.TrimLeft(sp.Type, "0") {
			t.Errorf("p%d: type %s, sfdisk %s", p.Number, p.Type, sp.Type)
		}
		if len(p.Problems) > 0 {
			t.Errorf("p%d: unexpected problems %v", p.Number, p.Problems)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestMBRWithLogicalPartitions(t *testing.T) {
	testutil.RequireTools(t, "sfdisk")
	img := filepath.Join(t.TempDir(), "mbr.img")
	fixture.Image(t, img, 64<<20)
	script := `label: dos
start=2048, size=4096, type=83, bootable
start=8192, size=4096, type=7
start=14336, size=4096, type=c
start=20480, size=90000, type=5
size=8192, type=83
size=8192, type=82
size=8192, type=8e
`
	runStdin(t, script, "sfdisk", img)
	tab := readTable(t, img)
	if tab.Type != partinfo.TableMBR || tab.DynamicDisk {
		t.Fatalf("table %+v", tab)
	}
	compareWithSfdisk(t, img, tab)
	var numbers []int
	for _, p := range tab.Partitions {
		numbers = append(numbers, p.Number)
		if p.Number >= 5 != p.Logical {
			t.Errorf("p%d: logical=%v", p.Number, p.Logical)
		}
	}
	if got := tab.Partitions; len(got) != 7 || got[3].Extended != true || got[6].MBRType != 0x8e || got[5].TypeName != "Linux swap" {
		t.Errorf("partitions %v", numbers)
	}
}

func TestGPTFivePartitionsAndBackup(t *testing.T) {
	testutil.RequireTools(t, "sgdisk", "sfdisk")
	img := filepath.Join(t.TempDir(), "gpt.img")
	fixture.Image(t, img, 64<<20)
	fixture.Run(t, nil, "sgdisk",
		"-n", "1:2048:+4M", "-t", "1:ef00", "-c", "1:EFI system",
		"-n", "2:0:+8M", "-t", "2:0c01", "-c", "2:Microsoft reserved",
		"-n", "3:0:+16M", "-t", "3:0700", "-c", "3:Windows Daten ü",
		"-n", "4:0:+8M", "-t", "4:8200", "-c", "4:swap",
		"-n", "5:0:0", "-t", "5:8300", "-c", "5:root",
		"-A", "1:set:2", img)
	tab := readTable(t, img)
	if tab.Type != partinfo.TableGPT || tab.UsedBackupGPT || len(tab.Warnings) != 0 {
		t.Fatalf("table %+v", tab)
	}
	compareWithSfdisk(t, img, tab)
	if !tab.Partitions[0].Bootable || tab.Partitions[0].TypeName != "EFI System" || tab.Partitions[2].TypeName != "Microsoft basic data" {
		t.Errorf("partition 1/3: %+v %+v", tab.Partitions[0], tab.Partitions[2])
	}
	want := tab.Partitions

	for _, c := range []struct {
		name string
		off  int64
	}{{"header", 512 + 16}, {"entries", 1024 + 40}} {
		t.Run("corrupt primary "+c.name, func(t *testing.T) {
			bad := filepath.Join(t.TempDir(), "bad.img")
			fixture.Run(t, nil, "cp", "--sparse=always", img, bad)
			f, err := os.OpenFile(bad, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteAt([]byte("garbage!"), c.off)
			f.Close()
			tab := readTable(t, bad)
			if !tab.UsedBackupGPT || len(tab.Warnings) == 0 {
				t.Errorf("backup not reported: %+v", tab)
			}
			if len(tab.Partitions) != len(want) {
				t.Fatalf("%d partitions from backup, want %d", len(tab.Partitions), len(want))
			}
			for i := range want {
				if tab.Partitions[i].Start != want[i].Start || tab.Partitions[i].GUID != want[i].GUID || tab.Partitions[i].Name != want[i].Name {
					t.Errorf("backup p%d = %+v, want %+v", i+1, tab.Partitions[i], want[i])
				}
			}
		})
	}
	t.Run("both corrupt", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.img")
		fixture.Run(t, nil, "cp", "--sparse=always", img, bad)
		f, _ := os.OpenFile(bad, os.O_RDWR, 0)
		f.WriteAt([]byte("garbage!"), 512+16)
		f.WriteAt([]byte("garbage!"), (64<<20)-512+16)
		st, _ := f.Stat()
		_, err := partinfo.ReadTable(f, st.Size())
		f.Close()
		if err == nil || !strings.Contains(err.Error(), "CRC") {
			t.Errorf("both headers corrupt: %v, want a CRC error", err)
		}
	})
}

func TestDynamicDisks(t *testing.T) {
	testutil.RequireTools(t, "sfdisk", "sgdisk")
	mbr := filepath.Join(t.TempDir(), "dyn.img")
	fixture.Image(t, mbr, 16<<20)
	runStdin(t, "label: dos\nstart=2048, size=20000, type=42\n", "sfdisk", mbr)
	tab := readTable(t, mbr)
	if !tab.DynamicDisk {
		t.Errorf("MBR type 0x42 not reported as a dynamic disk")
	}
	f, _ := os.Open(mbr)
	defer f.Close()
	if d := partinfo.DetectPartition(f, tab.Partitions[0]); d.Type != partinfo.TypeLDM {
		t.Errorf("LDM partition detected as %q", d.Type)
	}
	if u := partinfo.Unreadable(partinfo.Detection{Type: partinfo.TypeLDM}); u == nil || !strings.Contains(u.Error(), "dynamic disk") {
		t.Errorf("LDM unreadable message: %v", u)
	}
	gpt := filepath.Join(t.TempDir(), "dyngpt.img")
	fixture.Image(t, gpt, 16<<20)
	fixture.Run(t, nil, "sgdisk", "-n", "1:2048:+1M", "-t", "1:4201", "-n", "2:0:0", "-t", "2:4202", gpt)
	if tab := readTable(t, gpt); !tab.DynamicDisk || tab.Partitions[0].Type != partinfo.GUIDLDMMetadata {
		t.Errorf("GPT LDM not reported: %+v", tab)
	}
}

func TestWholeDiskFilesystemHasNoTable(t *testing.T) {
	testutil.RequireTools(t, "mkfs.vfat", "mkntfs", "mkfs.ext4")
	for _, mk := range [][]string{{"mkfs.vfat", "-F", "32"}, {"mkntfs", "-F", "-Q", "-q"}, {"mkfs.ext4", "-q", "-F"}} {
		img := filepath.Join(t.TempDir(), "whole.img")
		fixture.Image(t, img, 64<<20)
		fixture.Run(t, nil, mk[0], append(mk[1:], img)...)
		if tab := readTable(t, img); tab.Type != partinfo.TableNone || len(tab.Partitions) != 0 {
			t.Errorf("%s whole disk: table %+v", mk[0], tab)
		}
	}
}

func runStdin(t *testing.T, stdin string, name string, args ...string) {
	t.Helper()
	fixture.RunInput(t, stdin, name, args...)
}
