package serve

import (
	"encoding/json"
	"testing"

	"github.com/cairnbackup/cairn/blockmap/remote"
)

// TestRemotePointsBody: the API's and the CLI's list of a remote's points
// call the unreadable manifests "unreadable" (and still "bad", the API's
// old name); empty lists are [] not null.
func TestRemotePointsBody(t *testing.T) {
	for _, bad := range [][]remote.BadObject{nil, {{Object: "manifests/x", Err: "authentication failed"}}} {
		data, err := json.Marshal(NewRemotePoints("off", nil, bad))
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]json.RawMessage
		if err := json.Unmarshal(data, &got); err != nil {
			t.Fatal(err)
		}
		want := "[]"
		if bad != nil {
			want = `[{"object":"manifests/x","error":"authentication failed"}]`
		}
		if string(got["unreadable"]) != want || string(got["bad"]) != want || string(got["points"]) != "[]" || string(got["remote"]) != `"off"` {
			t.Errorf("body %s, want unreadable and bad %s, points []", data, want)
		}
	}
}
