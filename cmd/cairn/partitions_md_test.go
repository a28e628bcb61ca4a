package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/internal/bytesize"
	"github.com/cairnbackup/cairn/internal/mdfixture"
	"github.com/cairnbackup/cairn/partinfo/volumes"
)

// TestPartitionsUnassembledMDArray: an MD array that cannot be assembled
// (raid5 missing two of four members, raid0 missing one of three) is
// listed with the size its superblocks declare, not 0 B, and says why it
// is not assembled, in --json and in the text table.
func TestPartitionsUnassembledMDArray(t *testing.T) {
	for _, tc := range []struct {
		spec    mdfixture.Spec
		missing []int
	}{
		{mdfixture.Spec{Version: "1.2", Level: mdfixture.Level5, Layout: mdfixture.AlgLeftSymmetric, Chunk: 64 << 10, Members: 4, MemberLen: 3 << 20, Name: "r5"}, []int{1, 2}},
		{mdfixture.Spec{Version: "1.2", Level: mdfixture.Level0, Chunk: 64 << 10, Members: 3, MemberLen: 3 << 20, Name: "stripe"}, []int{0}},
		{mdfixture.Spec{Version: "0.90", Level: mdfixture.Level6, Layout: mdfixture.AlgLeftSymmetric, Chunk: 64 << 10, Members: 5, MemberLen: 3 << 20, Name: "r6"}, []int{0, 3, 4}},
		{mdfixture.Spec{Version: "1.2", Level: mdfixture.Level10, Layout: 0x102, Chunk: 64 << 10, Members: 4, MemberLen: 3 << 20, Name: "r10"}, []int{0, 1}},
		{mdfixture.Spec{Version: "1.0", Level: mdfixture.LevelLinear, Members: 3, MemberLen: 3 << 20, Name: "lin"}, []int{2}},
	} {
		t.Run(tc.spec.Name, func(t *testing.T) {
			s := tc.spec
			paths := s.Build(t, t.TempDir(), make([]byte, s.ArraySize()))
			var disks []volumes.Disk
			for i, p := range paths {
				skip := false
				for _, m := range tc.missing {
					skip = skip || m == i
				}
				if skip {
					continue
				}
				b, err := os.ReadFile(p)
				mustT(t, err)
				disks = append(disks, volumes.Disk{Name: fmt.Sprintf("sd%c", 'a'+i), R: bytes.NewReader(b), Size: int64(len(b))})
			}
			tables, err := describeLVM(context.Background(), disks, nil)
			mustT(t, err)
			var md *diskTableJSON
			for i := range tables {
				if strings.HasPrefix(tables[i].Disk, "md/") {
					md = &tables[i]
				}
			}
			if md == nil || len(md.Partitions) != 1 {
				t.Fatalf("no md table: %+v", tables)
			}
			v := md.Partitions[0]
			want := s.ArraySize()
			if md.Size != want || v.Size != want || !v.SizeDeclared {
				t.Errorf("%s: size %d (table %d, declared %v), want %d, the size the superblocks declare", md.Disk, v.Size, md.Size, v.SizeDeclared, want)
			}
			if !strings.Contains(v.VolumeError, "not assembled") || !strings.Contains(v.VolumeError, fmt.Sprintf("%d of %d members missing", len(tc.missing), s.Members)) {
				t.Errorf("%s: volume error %q, want why it is not assembled", md.Disk, v.VolumeError)
			}
			var text bytes.Buffer
			mustT(t, printPartitionTable(&text, []diskTableJSON{*md}))
			row := md.Disk + " "
			for _, l := range strings.Split(text.String(), "\n") {
				if strings.HasPrefix(l, row) && !strings.Contains(l, bytesize.IEC(want)) {
					t.Errorf("text row does not show the declared size %s:\n%s", bytesize.IEC(want), l)
				}
			}
			if !strings.Contains(text.String(), md.Disk+"/whole: cannot be read: not assembled") {
				t.Errorf("text does not say why the array is not assembled:\n%s", text.String())
			}
			t.Logf("\n%s", text.String())
		})
	}
}
