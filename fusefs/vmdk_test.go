package fusefs

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
)

func TestVMDKDescriptor(t *testing.T) {
	p := blockmap.Point{VM: "web01", ID: "2026-11-23T01-00-00Z", Gen: 3}
	d := blockmap.DiskInfo{Name: "disk0", Size: 10<<30 + 1000}
	desc := string(vmdkDescriptor(p, d))
	sectors := (d.Size + 511) / 512
	for _, want := range []string{
		"# Disk DescriptorFile\n",
		"createType=\"monolithicFlat\"\n",
		"parentCID=ffffffff\n",
		"RW 20971522 FLAT \"disk0.img\" 0\n",
		"ddb.geometry.heads = \"255\"\n",
		"ddb.geometry.sectors = \"63\"\n",
		"ddb.geometry.cylinders = \"1305\"\n",
		"ddb.adapterType = \"lsilogic\"\n",
	} {
		if !strings.Contains(desc, want) {
			t.Errorf("descriptor lacks %q (sectors %d):\n%s", want, sectors, desc)
		}
	}
	if again := string(vmdkDescriptor(p, d)); again != desc {
		t.Error("descriptor is not deterministic")
	}
	other := string(vmdkDescriptor(blockmap.Point{VM: "web01", ID: "x", Gen: 4}, d))
	if cidLine(other) == cidLine(desc) {
		t.Errorf("two points share %s", cidLine(desc))
	}
	tiny := string(vmdkDescriptor(p, blockmap.DiskInfo{Name: "d", Size: 4096}))
	if !strings.Contains(tiny, "ddb.geometry.cylinders = \"1\"\n") || !strings.Contains(tiny, "RW 8 FLAT") {
		t.Errorf("tiny disk descriptor:\n%s", tiny)
	}
	for name, ok := range map[string]bool{"disk0": true, "my disk": true, `a"b`: false, "a\nb": false} {
		if vmdkSafeName(name) != ok {
			t.Errorf("vmdkSafeName(%q) = %v", name, !ok)
		}
	}
}

func cidLine(desc string) string {
	for _, l := range strings.Split(desc, "\n") {
		if strings.HasPrefix(l, "CID=") {
			return l
		}
	}
	return ""
}

func TestPointInfoJSON(t *testing.T) {
	p := blockmap.Point{VM: "web01", ID: "2026-11-23T01-00-00Z", Gen: 2, Time: time.Date(2026, 11, 23, 1, 0, 0, 0, time.UTC),
		Consistency: blockmap.ConsistencyQuiesced, Meta: json.RawMessage(`{"moref":"vm-42"}`),
		Disks: []blockmap.DiskInfo{
			{Name: "disk0", Size: 1 << 30, BlockSize: 256 << 10, StoredBytes: 5 << 20, Full: true, FullReason: "first backup", Meta: json.RawMessage(`{broken`)},
			{Name: "disk1", Size: 2 << 30, BlockSize: 256 << 10, StoredBytes: 1 << 20},
		}}
	data, err := pointInfoJSON(p)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("not valid JSON (%v):\n%s", err, data)
	}
	if got["vm"] != "web01" || got["point"] != p.ID || got["generation"] != 2.0 || got["consistency"] != "quiesced" ||
		got["stored_bytes"] != float64(6<<20) || got["meta"].(map[string]any)["moref"] != "vm-42" {
		t.Errorf("info.json fields wrong:\n%s", data)
	}
	disks := got["disks"].([]any)
	d0 := disks[0].(map[string]any)
	if len(disks) != 2 || d0["name"] != "disk0" || d0["full"] != true || d0["full_reason"] != "first backup" ||
		d0["image"] != "disks/disk0.img" || d0["size"] != float64(1<<30) {
		t.Errorf("disks wrong:\n%s", data)
	}
	if _, ok := d0["meta"]; ok {
		t.Errorf("invalid disk meta was kept:\n%s", data)
	}
	if !strings.HasSuffix(string(data), "}\n") {
		t.Error("info.json does not end with a newline")
	}
}
