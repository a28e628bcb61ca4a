package partinfo_test

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/partinfo"
)

// craftMBR writes a partition entry into sector sec of disk.
func craftEntry(disk []byte, sec int64, idx int, status, typ byte, lba, count uint32) {
	e := disk[sec*512+446+int64(idx)*16:]
	e[0] = status
	e[4] = typ
	binary.LittleEndian.PutUint32(e[8:], lba)
	binary.LittleEndian.PutUint32(e[12:], count)
	disk[sec*512+510], disk[sec*512+511] = 0x55, 0xAA
}

func TestMBROverlapAndRangeAreFlaggedNotFatal(t *testing.T) {
	disk := make([]byte, 1<<20) // 2048 sectors
	craftEntry(disk, 0, 0, 0x80, 0x83, 100, 500)
	craftEntry(disk, 0, 1, 0, 0x83, 400, 500)   // overlaps p1
	craftEntry(disk, 0, 2, 0, 0x07, 1500, 9000) // past the end
	tab, err := partinfo.ReadTable(bytes.NewReader(disk), int64(len(disk)))
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.Partitions) != 3 {
		t.Fatalf("%d partitions", len(tab.Partitions))
	}
	has := func(p partinfo.Partition, s string) bool {
		return strings.Contains(strings.Join(p.Problems, ";"), s)
	}
	if !has(tab.Partitions[0], "overlaps p2") || !has(tab.Partitions[1], "overlaps p1") {
		t.Errorf("overlap not flagged: %+v", tab.Partitions[:2])
	}
	if !has(tab.Partitions[2], "past the end") {
		t.Errorf("out of range not flagged: %+v", tab.Partitions[2])
	}
	if !tab.Partitions[0].Bootable || tab.Partitions[1].Bootable {
		t.Errorf("bootable flags wrong")
	}
}

func TestEBRChainLoopStops(t *testing.T) {
	disk := make([]byte, 4<<20) // 8192 sectors
	craftEntry(disk, 0, 0, 0, 0x05, 2048, 6000)
	// EBR at 2048: logical at +63, next EBR at ext+1000.
	craftEntry(disk, 2048, 0, 0, 0x83, 63, 500)
	craftEntry(disk, 2048, 1, 0, 0x05, 1000, 600)
	// EBR at 3048 links back to the first EBR: a loop.
	craftEntry(disk, 3048, 0, 0, 0x83, 63, 500)
	craftEntry(disk, 3048, 1, 0, 0x05, 0+1, 600)
	craftEntry(disk, 2049, 0, 0, 0x83, 63, 100)
	craftEntry(disk, 2049, 1, 0, 0x05, 1000, 600)
	tab, err := partinfo.ReadTable(bytes.NewReader(disk), int64(len(disk)))
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.Warnings) == 0 || !strings.Contains(strings.Join(tab.Warnings, ";"), "loops") {
		t.Errorf("loop not reported: %v", tab.Warnings)
	}
	if n := len(tab.Partitions); n != 4 {
		t.Errorf("%d partitions, want extended + 3 logicals: %+v", n, tab.Partitions)
	}
	if tab.Partitions[1].Number != 5 || tab.Partitions[1].Start != (2048+63)*512 || tab.Partitions[2].Start != (3048+63)*512 {
		t.Errorf("logicals %+v", tab.Partitions[1:])
	}
}

func TestEmptyAndTinyDisks(t *testing.T) {
	for _, n := range []int{0, 100, 512, 4096, 1 << 20} {
		tab, err := partinfo.ReadTable(bytes.NewReader(make([]byte, n)), int64(n))
		if err != nil || tab.Type != partinfo.TableNone {
			t.Errorf("%d zero bytes: %+v, %v", n, tab, err)
		}
	}
}
