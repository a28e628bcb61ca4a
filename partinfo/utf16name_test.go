package partinfo

import (
	"slices"
	"testing"
)

func TestDecodeUTF16Name(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []uint16
		want string
	}{
		{"ascii", []uint16{'a', 'b'}, "ab"},
		{"leading BOM is a character", []uint16{0xFEFF, 'b', 'o', 'm'}, "\uFEFFbom"},
		{"byte-swapped BOM is a character", []uint16{0xFFFE, 'x'}, "\uFFFEx"},
		{"pair", []uint16{0xD83D, 0xDE00}, "😀"},
		{"lone high", []uint16{'a', 0xD800}, "a\xED\xA0\x80"},
		{"lone low", []uint16{0xDFFF, 'z'}, "\xED\xBF\xBFz"},
		{"reversed pair", []uint16{0xDC00, 0xD800}, "\xED\xB0\x80\xED\xA0\x80"},
		{"stops at NUL", []uint16{'a', 0, 'b'}, "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := DecodeUTF16Name(tc.in); got != tc.want {
				t.Errorf("DecodeUTF16Name(%x) = %q, want %q", tc.in, got, tc.want)
			}
			if tc.in[len(tc.in)-1] != 0 && tc.name != "stops at NUL" {
				if back := EncodeUTF16Name(tc.want); !slices.Equal(back, tc.in) {
					t.Errorf("EncodeUTF16Name(%q) = %x, want %x", tc.want, back, tc.in)
				}
			}
		})
	}
	// Every lone surrogate gives a distinct name.
	seen := map[string]uint16{}
	for c := uint16(0xD800); c <= 0xDFFF; c++ {
		n := DecodeUTF16Name([]uint16{'f', c})
		if prev, dup := seen[n]; dup {
			t.Fatalf("units %x and %x decode to the same name %q", prev, c, n)
		}
		seen[n] = c
	}
}
