package fusefs

import (
	"encoding/json"
	"testing"

	"github.com/cairnbackup/cairn/blockmap"
)

// TestInfoJSONVerdict: info.json shows the suspicious-change verdict and
// each disk's content figures kept with the point, and drops them when
// they are not valid JSON.
func TestInfoJSONVerdict(t *testing.T) {
	p := blockmap.Point{VM: "v", ID: "p", Gen: 2,
		Verdict: json.RawMessage(`{"status":"suspicious","reason":"92 % of 20.4 MiB changed looks encrypted"}`),
		Disks:   []blockmap.DiskInfo{{Name: "d0", Content: json.RawMessage(`{"v":1,"written_bytes":10,"high_entropy_bytes":9}`)}}}
	data, err := pointInfoJSON(p)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Verdict struct{ Status, Reason string }
		Disks   []struct {
			Content struct {
				HighEntropyBytes int64 `json:"high_entropy_bytes"`
			}
		}
	}
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if got.Verdict.Status != "suspicious" || got.Disks[0].Content.HighEntropyBytes != 9 {
		t.Errorf("info.json %s", data)
	}
	p.Verdict = json.RawMessage(`{bad`)
	if data, err = pointInfoJSON(p); err != nil || !json.Valid(data) {
		t.Errorf("info.json with a damaged verdict: %v %s", err, data)
	}
}
