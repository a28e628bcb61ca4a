package anomaly

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/blockmap"
)

// FuzzRecords feeds arbitrary bytes as what this package reads back: a
// disk's content figures, a point's verdict and a line of the
// acknowledgement file. Nothing panics; figures that are accepted are
// consistent; the judge always gives a status and a reason.
func FuzzRecords(f *testing.F) {
	f.Add([]byte(`{"v":1,"written_bytes":100,"high_entropy_bytes":90}`))
	f.Add([]byte(`{"v":1,"written_bytes":-1,"high_entropy_bytes":90}`))
	f.Add([]byte(`{"v":2,"written_bytes":1e30}`))
	f.Add([]byte(`{"status":"suspicious","reason":"x"}`))
	f.Add([]byte(`{"vm":"v","point":"p"}` + "\n{bad\n"))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := blockmap.DiskInfo{Name: "d0", Content: json.RawMessage(data), Lineage: 1}
		if fig, ok := DiskFigures(d); ok && (fig.WrittenBytes < 0 || fig.HighEntropyBytes < 0 || fig.HighEntropyBytes > fig.WrittenBytes || fig.Share() > 1) {
			t.Fatalf("accepted inconsistent figures %+v from %q", fig, data)
		}
		p := blockmap.Point{VM: "v", ID: "p", Gen: 3, Disks: []blockmap.DiskInfo{d}, Verdict: json.RawMessage(data)}
		ReadVerdict(p)
		hist := []blockmap.Point{p, p, p, {VM: "v", ID: "q", Gen: 2, Disks: []blockmap.DiskInfo{d}}}
		p.Gen = 4
		v := Judge(p, hist, nil, Thresholds{MinBaseline: 1})
		if v.Status == "" || v.Reason == "" {
			t.Fatalf("verdict %+v for %q", v, data)
		}
		Guard(nil)("v", hist)
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, AckFile), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadAcks(dir); err != nil && len(data) < 1<<20 {
			t.Fatalf("LoadAcks of %q: %v", data, err)
		}
	})
}
