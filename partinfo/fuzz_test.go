package partinfo_test

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/cairnbackup/cairn/partinfo"
)

// gptSeed builds a small valid GPT disk (1 MiB) in code.
func gptSeed(entries int) []byte { return gptDisk(entries, 512, 1<<20) }

// gptDisk builds a valid GPT disk with the given sector size.
func gptDisk(entries int, ss uint64, size int) []byte {
	disk := make([]byte, size)
	last := uint64(len(disk))/ss - 1
	craftEntry(disk, 0, 0, 0, 0xEE, 1, uint32(last))
	ents := make([]byte, 128*128)
	for i := 0; i < entries; i++ {
		e := ents[i*128:]
		copy(e[0:16], []byte{0xAF, 0x3D, 0xC6, 0x0F, 0x83, 0x84, 0x72, 0x47, 0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4})
		e[16] = byte(i + 1)
		binary.LittleEndian.PutUint64(e[32:], uint64(100+i*200))
		binary.LittleEndian.PutUint64(e[40:], uint64(100+i*200+199))
		copy(e[56:], []byte{'p', 0, byte('0' + i), 0})
	}
	put := func(hdrLBA, backupLBA, entLBA uint64) {
		h := disk[hdrLBA*ss:]
		copy(h, "EFI PART")
		binary.LittleEndian.PutUint32(h[8:], 0x00010000)
		binary.LittleEndian.PutUint32(h[12:], 92)
		binary.LittleEndian.PutUint64(h[24:], hdrLBA)
		binary.LittleEndian.PutUint64(h[32:], backupLBA)
		binary.LittleEndian.PutUint64(h[40:], 2+uint64(len(ents))/ss)
		binary.LittleEndian.PutUint64(h[48:], last-1-uint64(len(ents))/ss)
		binary.LittleEndian.PutUint64(h[72:], entLBA)
		binary.LittleEndian.PutUint32(h[80:], 128)
		binary.LittleEndian.PutUint32(h[84:], 128)
		binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(ents))
		copy(disk[entLBA*ss:], ents)
		binary.LittleEndian.PutUint32(h[16:], 0)
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
	}
	put(1, last, 2)
	put(last, 1, last-uint64(len(ents))/ss)
	return disk
}

func TestGPTSeedIsValid(t *testing.T) {
	d := gptSeed(5)
	tab, err := partinfo.ReadTable(bytes.NewReader(d), int64(len(d)))
	if err != nil || tab.Type != partinfo.TableGPT || len(tab.Partitions) != 5 || tab.UsedBackupGPT {
		t.Fatalf("seed GPT: %+v, %v", tab, err)
	}
	copy(d[512:], "XXXX")
	tab, err = partinfo.ReadTable(bytes.NewReader(d), int64(len(d)))
	if err != nil || !tab.UsedBackupGPT || len(tab.Partitions) != 5 {
		t.Fatalf("seed GPT with broken primary: %+v, %v", tab, err)
	}
	// A 4Kn disk: the GPT header sits at byte 4096.
	d = gptDisk(3, 4096, 4<<20)
	tab, err = partinfo.ReadTable(bytes.NewReader(d), int64(len(d)))
	if err != nil || tab.SectorSize != 4096 || len(tab.Partitions) != 3 || tab.Partitions[1].Start != 300*4096 {
		t.Fatalf("4Kn GPT: %+v, %v", tab, err)
	}
}

func mbrSeed() []byte {
	disk := make([]byte, 2<<20)
	craftEntry(disk, 0, 0, 0x80, 0x83, 64, 500)
	craftEntry(disk, 0, 1, 0, 0x0F, 1000, 3000)
	craftEntry(disk, 1000, 0, 0, 0x07, 63, 300)
	craftEntry(disk, 1000, 1, 0, 0x05, 500, 800)
	craftEntry(disk, 1500, 0, 0, 0x42, 63, 300)
	return disk
}

func FuzzReadTable(f *testing.F) {
	f.Add(gptSeed(5))
	f.Add(mbrSeed())
	f.Add(make([]byte, 4096))
	f.Fuzz(func(t *testing.T, disk []byte) {
		tab, err := partinfo.ReadTable(bytes.NewReader(disk), int64(len(disk)))
		if err == nil && tab == nil {
			t.Fatal("nil table without error")
		}
		if err == nil {
			for _, p := range tab.Partitions {
				_ = partinfo.DetectPartition(bytes.NewReader(disk), p)
			}
		}
	})
}

func FuzzDetect(f *testing.F) {
	for _, c := range detectSeeds() {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, vol []byte) {
		d := partinfo.Detect(bytes.NewReader(vol), 0, int64(len(vol)))
		if d.Type == "" {
			t.Fatal("empty type")
		}
		_ = partinfo.Unreadable(d)
	})
}

// detectSeeds are minimal volumes carrying each signature.
func detectSeeds() [][]byte {
	vol := func(n int, parts ...any) []byte {
		b := make([]byte, n)
		for i := 0; i+1 < len(parts); i += 2 {
			copy(b[parts[i].(int):], parts[i+1].(string))
		}
		return b
	}
	fatBoot := func(fat32 bool) []byte {
		b := make([]byte, 128<<10)
		b[0] = 0xEB
		binary.LittleEndian.PutUint16(b[11:], 512)
		b[13] = 1
		binary.LittleEndian.PutUint16(b[14:], 1)
		b[16] = 2
		binary.LittleEndian.PutUint16(b[19:], 256)
		if fat32 {
			binary.LittleEndian.PutUint32(b[36:], 2)
			binary.LittleEndian.PutUint32(b[44:], 2)
		} else {
			binary.LittleEndian.PutUint16(b[17:], 16)
			binary.LittleEndian.PutUint16(b[22:], 1)
		}
		b[510], b[511] = 0x55, 0xAA
		return b
	}
	ext := vol(4096, 1024+56, "\x53\xef", 1024+0x60, "\xc0\x02")
	return [][]byte{
		vol(4096, 0, "LUKS\xba\xbe\x00\x02"),
		vol(4096, 512, "LABELONE", 512+24, "LVM2 001", 512+20, "\x20"),
		vol(4096, 3, "-FVE-FS-"), vol(4096, 3, "NTFS    ", 11, "\x00\x02\x08"),
		vol(4096, 3, "EXFAT   ", 108, "\x09\x03"), vol(4096, 3, "ReFS", 16, "FSRS"),
		vol(4096, 0, "XFSB\x00\x00\x10\x00"), ext, vol(0x11000, 0x10040, "_BHRfS_M"),
		vol(4096, 4086, "SWAPSPACE2"), vol(40000, 32769, "CD001"), fatBoot(false), fatBoot(true),
	}
}
