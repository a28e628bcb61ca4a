package main

import (
	"encoding/json"
	"testing"

	"github.com/cairnbackup/cairn/blockmap/remote"
)

// TestRemoteListRow: remote list --json says what the text's IMMUTABLE
// DAYS column says: unknown (null) until checked for a remote added
// without --immutable-days, the registered days, or what a check learned
// and from where; never a secret's contents.
func TestRemoteListRow(t *testing.T) {
	rc := &remoteConfig{Name: "dr", Endpoint: "https://s3.example.net", Bucket: "b", CredentialsFile: "/etc/cairn/s3.cred", KeyFile: "/etc/cairn/k", LimitRate: 1 << 20}
	for _, tc := range []struct {
		name       string
		registered int
		ret        *remote.Retention
		days       string // JSON of immutable_days
		from       string
	}{
		{"unknown", 0, nil, "null", ""},
		{"registered", 30, nil, "30", remote.RetentionRemote},
		{"bucket default", 0, &remote.Retention{ObjectLock: true, BucketMode: "COMPLIANCE", BucketDays: 7}, "7", remote.RetentionBucketDflt},
		{"checked, none", 0, &remote.Retention{}, "0", remote.RetentionNone},
	} {
		rc.ImmutableDays = tc.registered
		data, err := json.Marshal(newRemoteListRow(rc, tc.ret))
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]json.RawMessage
		if err := json.Unmarshal(data, &got); err != nil {
			t.Fatal(err)
		}
		from := ""
		if f, ok := got["retention_from"]; ok {
			_ = json.Unmarshal(f, &from)
		}
		if string(got["immutable_days"]) != tc.days || from != tc.from || string(got["limit_rate"]) != "1048576" || string(got["key_file"]) != `"/etc/cairn/k"` {
			t.Errorf("%s: %s", tc.name, data)
		}
	}
}
