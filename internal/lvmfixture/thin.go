package lvmfixture

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fillThin lays the images of thin1 and thin2 (when given) into the pool:
// every 64 KiB chunk that is not all zeros gets a data block, and a chunk
// of thin2 equal to thin1's at the same place shares thin1's block (as a
// snapshot does). The mapping is written as thin_restore XML and the
// metadata thin_restore makes is put into pool_tmeta; thin_dump reads it
// back as a check.
func fillThin(t testing.TB, dir string, fill map[string]string, data func([]byte, int64), meta func([]byte)) {
	t.Helper()
	const poolBlocks = 32 * MiB / ThinChunk
	next := uint64(0)
	var xml strings.Builder
	var devices strings.Builder
	images := map[string][]byte{}
	for _, name := range []string{"thin1", "thin2"} {
		if fill[name] != "" {
			b, err := os.ReadFile(fill[name])
			if err != nil {
				t.Fatal(err)
			}
			images[name] = b
		}
	}
	shared := map[uint64]uint64{} // thin1's virtual block -> data block
	for id, name := range []string{"thin1", "thin2"} {
		img := images[name]
		var maps strings.Builder
		mapped := 0
		zero := make([]byte, ThinChunk)
		for v := uint64(0); int64(v)*ThinChunk < int64(len(img)); v++ {
			chunk := img[int64(v)*ThinChunk : min(int64(v+1)*ThinChunk, int64(len(img)))]
			if bytes.Equal(chunk, zero[:len(chunk)]) {
				continue
			}
			var d uint64
			if b, ok := shared[v]; ok && name == "thin2" && bytes.Equal(chunk, images["thin1"][int64(v)*ThinChunk:min(int64(v+1)*ThinChunk, int64(len(images["thin1"])))]) {
				d = b
			} else {
				if next >= poolBlocks {
					t.Fatalf("lvmfixture: thin images need more than the pool's %d blocks", poolBlocks)
				}
				d = next
				next++
				data(chunk, int64(d)*ThinChunk)
			}
			if name == "thin1" {
				shared[v] = d
			}
			fmt.Fprintf(&maps, "    <single_mapping origin_block=\"%d\" data_block=\"%d\" time=\"%d\"/>\n", v, d, id)
			mapped++
		}
		fmt.Fprintf(&devices, "  <device dev_id=\"%d\" mapped_blocks=\"%d\" transaction=\"%d\" creation_time=\"%d\" snap_time=\"%d\">\n%s  </device>\n", id+1, mapped, id, id, id, maps.String())
	}
	fmt.Fprintf(&xml, "<superblock uuid=\"\" time=\"1\" transaction=\"2\" flags=\"0\" version=\"2\" data_block_size=\"%d\" nr_data_blocks=\"%d\">\n%s</superblock>\n", ThinChunk/512, poolBlocks, devices.String())
	x := filepath.Join(dir, "thin.xml")
	m := filepath.Join(dir, "tmeta.bin")
	if err := os.WriteFile(x, []byte(xml.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(m)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(4 * MiB)
	f.Close()
	sh(t, "thin_restore", "-i", x, "-o", m)
	if out := sh(t, "thin_dump", m); !strings.Contains(out, `dev_id="2"`) {
		t.Fatalf("thin_dump of the restored metadata:\n%s", out)
	}
	b, err := os.ReadFile(m)
	if err != nil {
		t.Fatal(err)
	}
	meta(b)
}
