package bytesize

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string // part of the error; "" for none
	}{
		{"65536", 65536, ""},
		{"64k", 64 << 10, ""},
		{"64K", 64 << 10, ""},
		{"64KiB", 64 << 10, ""},
		{"64 KiB", 64 << 10, ""},
		{" 1M ", 1 << 20, ""},
		{"1MiB", 1 << 20, ""},
		{"256m", 256 << 20, ""},
		{"2G", 2 << 30, ""},
		{"2GiB", 2 << 30, ""},
		{"1T", 1 << 40, ""},
		{"1.5G", 3 << 29, ""},
		{"0.5k", 512, ""},
		{"100B", 100, ""},
		{"0", 0, ""},
		{"", 0, "empty"},
		{"abc", 0, "unknown unit"},
		{"64kb", 0, `unknown unit "kb"`},
		{"64KB", 0, `unknown unit "KB"`},
		{"-1k", 0, "negative"},
		{"1.5", 0, "not a whole number"},
		{"0.1k", 0, "not a whole number"},
		{"9999999T", 0, "too large"},
		{"99999999999999999999", 0, "too large"},
		{"1..5k", 0, "not a number"},
	} {
		got, err := Parse(tc.in)
		if tc.err == "" {
			if err != nil || got != tc.want {
				t.Errorf("Parse(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
			continue
		}
		if err == nil || !errors.Is(err, ErrBadSize) || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Parse(%q) = %d, %v; want ErrBadSize saying %q", tc.in, got, err, tc.err)
		}
	}
}

func TestShortRoundTrips(t *testing.T) {
	for _, n := range []int64{0, 1, 1000, 1024, 65536, 1536 << 10, 1 << 20, 3 << 30, 5 << 40} {
		s := Short(n)
		if got, err := Parse(s); err != nil || got != n {
			t.Errorf("Parse(Short(%d) = %q) = %d, %v", n, s, got, err)
		}
	}
	if s := Short(64 << 10); s != "64k" {
		t.Errorf("Short(65536) = %q, want 64k", s)
	}
}
