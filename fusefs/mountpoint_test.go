package fusefs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestParseMountInfo(t *testing.T) {
	line := `36 35 98:0 /mnt1 /mnt/with\040space rw,noatime master:1 - fuse.cairn cairn rw,user_id=0`
	mi, ok := parseMountInfo(line)
	if !ok || mi.Dir != "/mnt/with space" || mi.FSType != "fuse.cairn" || mi.Source != "cairn" {
		t.Errorf("parseMountInfo = %+v, %v", mi, ok)
	}
	for _, bad := range []string{"", "1 2 3", "1 2 3 4 5 6 -", `a b c d e - x`} {
		if mi, ok := parseMountInfo(bad); ok {
			t.Errorf("parseMountInfo(%q) = %+v, want not ok", bad, mi)
		}
	}
	if got := unescapeMount(`a\134b\011c\`); got != "a\\b\tc\\" {
		t.Errorf("unescapeMount = %q", got)
	}
}

func FuzzParseMountInfo(f *testing.F) {
	f.Add(`36 35 98:0 /mnt1 /mnt/with\040space rw,noatime master:1 - fuse.cairn cairn rw`)
	f.Add(`1 2 3 4 5 - - - -`)
	f.Add(`\777 \0 - `)
	f.Fuzz(func(t *testing.T, line string) {
		mi, ok := parseMountInfo(line)
		if ok && mi.FSType == "" {
			t.Errorf("ok with an empty type: %+v", mi)
		}
	})
}

func TestCheckMountPoint(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := map[string]error{
		filepath.Join(dir, "missing"): ErrNoMountPoint,
		file:                          ErrNotDirectory,
		"/proc":                       ErrAlreadyMounted,
		dir:                           nil,
	}
	for path, want := range cases {
		if err := CheckMountPoint(path); !errors.Is(err, want) || (want == nil) != (err == nil) {
			t.Errorf("CheckMountPoint(%s) = %v, want %v", path, err, want)
		}
	}
	if err := Unmount(dir, false); !errors.Is(err, ErrNotMounted) {
		t.Errorf("Unmount of a plain directory = %v, want ErrNotMounted", err)
	}
	if err := Unmount("/proc", false); err == nil {
		t.Error("Unmount refused nothing on /proc")
	}
}
