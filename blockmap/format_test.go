package blockmap

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func cairnJSONFormat(t *testing.T, dir string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "cairn.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg.Format
}

// TestFormatRaisedForReusedDiskID: a repository stays at FormatBase (what
// every cairn reads) until a point holds a disk back after points without
// it; that commit raises cairn.json to FormatLineage first, so a cairn from
// before lineages refuses the repository instead of reading the disk's
// earlier life through its holes. The raised repository opens again, and
// one above FormatVersion is refused with ErrUnsupportedFormat.
func TestFormatRaisedForReusedDiskID(t *testing.T) {
	r := newTestRepo(t)
	const size = 4 * testBS
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*7 + 1)
	}
	if got := cairnJSONFormat(t, r.Dir()); got != FormatBase {
		t.Fatalf("init wrote format %d, want %d", got, FormatBase)
	}
	pointOf(t, r, "vm", false, "a", data, "b", data)
	pointOf(t, r, "vm", false, "a", data, "b", data) // an incremental
	pointOf(t, r, "vm2", false, "a", data)           // another VM's first disk
	if got := cairnJSONFormat(t, r.Dir()); got != FormatBase {
		t.Fatalf("points of disks with one life each raised the format to %d", got)
	}
	pointOf(t, r, "vm", false, "a", data) // b leaves
	if got := cairnJSONFormat(t, r.Dir()); got != FormatBase {
		t.Fatalf("a disk leaving raised the format to %d", got)
	}
	pointOf(t, r, "vm", false, "a", data, "b", make([]byte, size)) // b is back, all zero
	if got := cairnJSONFormat(t, r.Dir()); got != FormatLineage {
		t.Fatalf("after a disk came back cairn.json names format %d, want %d", got, FormatLineage)
	}
	if got := r.Config().Format; got != FormatLineage {
		t.Fatalf("Config().Format = %d, want %d", got, FormatLineage)
	}
	r2, err := Open(context.Background(), r.Dir(), Options{})
	if err != nil {
		t.Fatalf("open a repository of format %d: %v", FormatLineage, err)
	}
	if pts, err := r2.Points(context.Background(), "vm"); err != nil || len(pts) != 4 {
		t.Fatalf("points after the raise: %d, %v", len(pts), err)
	}
	// The rest of cairn.json is kept.
	if r2.Config().BlockSize != r.Config().BlockSize || r2.Config().Hash != r.Config().Hash || !r2.Config().Created.Equal(r.Config().Created) {
		t.Fatalf("raising the format changed cairn.json: %+v, was %+v", r2.Config(), r.Config())
	}
	raw, _ := os.ReadFile(filepath.Join(r.Dir(), "cairn.json"))
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	m["format"] = FormatVersion + 1
	out, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(r.Dir(), "cairn.json"), out, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), r.Dir(), Options{}); !errors.Is(err, ErrUnsupportedFormat) {
		t.Fatalf("open of format %d: %v, want ErrUnsupportedFormat", FormatVersion+1, err)
	}
}
