package vmconfig

import (
	"errors"
	"strings"
	"testing"
)

// TestParseRecorded: a point's configuration with a field this cairn does
// not know, or a newer version, was recorded by a newer cairn: ErrNewer
// naming the field (an older cairn said only "unknown field"); mistakes
// stay ErrInvalid, and a known document parses as with Parse.
func TestParseRecorded(t *testing.T) {
	if _, err := ParseRecorded([]byte(good)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, from, to, field string
		newer                 bool
	}{
		{"field of a newer cairn", `"cpus":4`, `"cpus":4,"tpm":{"version":"2.0"}`, "tpm", true},
		{"newer version", `"version":1`, `"version":2`, "version", true},
		{"version 0", `"version":1`, `"version":0`, "version", false},
		{"wrong type", `"cpus":4`, `"cpus":"4"`, "cpus", false},
		{"bad value", `"firmware":"efi"`, `"firmware":"uefi"`, "firmware", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.Replace(good, tc.from, tc.to, 1)
			if doc == good {
				t.Fatal("replacement did not apply")
			}
			_, err := ParseRecorded([]byte(doc))
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("err %v: want one naming %s", err, tc.field)
			}
			if errors.Is(err, ErrNewer) != tc.newer {
				t.Fatalf("err %v: errors.Is(ErrNewer) = %v, want %v", err, !tc.newer, tc.newer)
			}
			if tc.newer && !strings.Contains(err.Error(), "newer cairn") {
				t.Fatalf("err %v does not say a newer cairn recorded it", err)
			}
			if !tc.newer && !errors.Is(err, ErrInvalid) {
				t.Fatalf("err %v: want ErrInvalid", err)
			}
		})
	}
}
