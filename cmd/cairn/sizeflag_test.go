package main

import (
	"errors"
	"strings"
	"testing"
)

// TestSizeFlags: every size flag takes the same syntax (64k, 256KiB, 2G;
// --cache-size once refused 512m and 1T, --larger 10k, --pack-size any
// suffix) and a bad value is a usage error naming the command, the flag
// and the range.
func TestSizeFlags(t *testing.T) {
	for _, tc := range []struct {
		command, flag, in string
		min, max          int64
		want              int64
		err               []string
	}{
		{"mount", "cache-size", "512m", 1 << 20, 0, 512 << 20, nil},
		{"mount", "cache-size", "1T", 1 << 20, 0, 1 << 40, nil},
		{"mount", "cache-size", "2GiB", 1 << 20, 0, 2 << 30, nil},
		{"mount", "cache-size", "512k", 1 << 20, 0, 0, []string{"mount: --cache-size 512k", "at least 1M (1048576 bytes)", "cairn mount --help"}},
		{"search", "larger", "10k", 0, 0, 10 << 10, nil},
		{"search", "larger", "100", 0, 0, 100, nil},
		{"search", "larger", "ten", 0, 0, 0, []string{"search: --larger", `"ten"`}},
		{"remote add", "pack-size", "8M", 0, 1 << 30, 8 << 20, nil},
		{"remote add", "pack-size", "2G", 0, 1 << 30, 0, []string{"remote add: --pack-size 2G", "from 0 to 1G"}},
	} {
		got, err := parseSizeFlag(tc.command, tc.flag, tc.in, tc.min, tc.max)
		if tc.err == nil {
			if err != nil || got != tc.want {
				t.Errorf("--%s %s = %d, %v; want %d", tc.flag, tc.in, got, err, tc.want)
			}
			continue
		}
		var ue *usageError
		if !errors.As(err, &ue) {
			t.Errorf("--%s %s: %v, want a usage error", tc.flag, tc.in, err)
			continue
		}
		for _, w := range tc.err {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("--%s %s: %q does not say %q", tc.flag, tc.in, err, w)
			}
		}
	}
	if _, err := parseBlockSize("96k"); err == nil || !strings.Contains(err.Error(), "power of two") {
		t.Errorf("--block-size 96k: %v", err)
	}
}
