package mdfixture

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestLayOutByVirt: for the raid10 layouts without far sets, placing each
// member chunk by raid10_find_virt gives the same members as the md(4)
// descriptions LayOut follows for near, far and offset copies, so the two
// ways cross-check each other (far sets are laid out only by the first).
func TestLayOutByVirt(t *testing.T) {
	for _, s := range []Spec{
		{Version: "1.2", Level: Level10, Layout: 0x102, Chunk: 64 << 10, Members: 4, MemberLen: 3 << 20},
		{Version: "1.2", Level: Level10, Layout: 0x102, Chunk: 32 << 10, Members: 3, MemberLen: 3 << 20},
		{Version: "1.2", Level: Level10, Layout: 0x103, Chunk: 16 << 10, Members: 5, MemberLen: 3 << 20},
		{Version: "1.2", Level: Level10, Layout: 0x201, Chunk: 64 << 10, Members: 4, MemberLen: 3 << 20},
		{Version: "1.2", Level: Level10, Layout: 0x201, Chunk: 32 << 10, Members: 3, MemberLen: 3<<20 + 96<<10},
		{Version: "1.0", Level: Level10, Layout: 0x301, Chunk: 16 << 10, Members: 4, MemberLen: 3 << 20},
		{Version: "1.2", Level: Level10, Layout: 0x10201, Chunk: 64 << 10, Members: 3, MemberLen: 3 << 20},
		{Version: "1.2", Level: Level10, Layout: 0x10301, Chunk: 32 << 10, Members: 4, MemberLen: 3 << 20},
	} {
		t.Run(fmt.Sprintf("%#x-%d", s.Layout, s.Members), func(t *testing.T) {
			data := make([]byte, s.ArraySize())
			for i := range data {
				data[i] = byte(i/int(s.Chunk)*7 + i%251)
			}
			want := s.LayOut(data)
			got := make([][]byte, len(want))
			for i := range got {
				got[i] = make([]byte, len(want[i]))
			}
			s.layOutByVirt(got, append([]byte(nil), data...))
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					for o := 0; o < len(got[i]); o += int(s.Chunk) {
						if !bytes.Equal(got[i][o:o+int(s.Chunk)], want[i][o:o+int(s.Chunk)]) {
							t.Fatalf("member %d differs first at chunk row %d", i, o/int(s.Chunk))
						}
					}
				}
			}
		})
	}
}

// TestBuildRaid1: members written piece by piece from a file are the
// members Build writes from memory, byte for byte (holes read as zeros).
func TestBuildRaid1(t *testing.T) {
	for _, v := range []string{"1.0", "1.1", "1.2"} {
		s := Spec{Version: v, Level: Level1, Members: 2, MemberLen: 3<<20 + 4096, Name: "r1-" + v}
		data := make([]byte, s.ArraySize()-5000) // a short source: the tail is zeros
		for i := range data {
			if i/(1<<19)%2 == 0 { // zero runs of 512 KiB between data
				data[i] = byte(i%253 + 1)
			}
		}
		src := filepath.Join(t.TempDir(), "array.img")
		if err := os.WriteFile(src, data, 0o644); err != nil {
			t.Fatal(err)
		}
		want := s.Build(t, t.TempDir(), append([]byte(nil), data...))
		got := s.BuildRaid1(t, t.TempDir(), src)
		for i := range want {
			w, _ := os.ReadFile(want[i])
			g, _ := os.ReadFile(got[i])
			if !bytes.Equal(g, w) {
				t.Errorf("%s member %d: %d bytes differ from Build's %d", v, i, len(g), len(w))
			}
		}
	}
}
