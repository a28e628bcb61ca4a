package main

import (
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
)

func TestParseExtents(t *testing.T) {
	want := []blockmap.Extent{{Offset: 1048576, Length: 65536}, {Offset: 8388608, Length: 131072}}
	for _, in := range []string{
		"1048576:65536,8388608:131072",
		"1048576:65536\n8388608:131072\n",
		"# changed\n1048576 65536\n8388608 131072",
		`[{"offset":1048576,"length":65536},{"start":8388608,"length":131072}]`,
		`[{"startOffset":1048576,"length":65536},{"offset":8388608,"length":131072}]`,
	} {
		got, err := parseExtents(in)
		if err != nil || len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
			t.Errorf("parseExtents(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, msg := range map[string]string{
		"12x":                         "OFFSET:LENGTH",
		"-1:5":                        "negative",
		`[{"offset":1,"length":"x"}]`: "JSON",
		strings.Repeat("0:1,", maxChangedAreas+1): "too many",
	} {
		if _, err := parseExtents(in); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("parseExtents(%.40q...): %v, want an error naming %q", in, err, msg)
		}
	}
}

func TestCheckPointTime(t *testing.T) {
	now := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		t  time.Time
		ok bool
	}{
		{time.Time{}, false},
		{time.Date(1969, 12, 31, 23, 0, 0, 0, time.UTC), false},
		{time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC), true},
		{now.Add(-time.Hour), true},
		{now.Add(2 * time.Hour), true}, // clocks differ
		{now.Add(48 * time.Hour), false},
		{time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), false},
	} {
		if err := checkPointTime(c.t, now); (err == nil) != c.ok {
			t.Errorf("checkPointTime(%v) = %v, want ok=%v", c.t, err, c.ok)
		}
	}
}
