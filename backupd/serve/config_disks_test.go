package serve

import (
	"strings"
	"testing"
)

// TestConfigExcludeDisks: exclude_disks: parses into the job's
// exclusions; a bad pattern, an empty list and the key on a job without
// vcenter are refused with the line.
func TestConfigExcludeDisks(t *testing.T) {
	data := strings.Replace(goodConfig, "    quiesce: auto", "    quiesce: auto\n    exclude_disks: [\"scsi0:1\", \"db-*/Hard disk 3\"]", 1)
	cfg, err := ParseConfig("cairn.yaml", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	ex := cfg.Jobs[0].ExcludeDisks
	if len(ex) != 2 || ex[0].Disk != "scsi0-1" || ex[0].VM != "" || ex[1].VM != "db-*" || ex[1].Disk != "Hard disk 3" {
		t.Errorf("exclusions %+v", ex)
	}
	for _, tc := range []struct{ to, reason string }{
		{"    exclude_disks: [\"web/\"]", "exclude_disks: disk exclusion \"web/\": no disk"},
		{"    exclude_disks: []", "exclude_disks is empty"},
		{"    exclude_disks: [\"[/x\"]", "bad VM pattern"},
	} {
		data := strings.Replace(goodConfig, "    quiesce: auto", "    quiesce: auto\n"+tc.to, 1)
		_, err := ParseConfig("cairn.yaml", []byte(data))
		if err == nil || !strings.Contains(err.Error(), tc.reason) || !strings.Contains(err.Error(), "cairn.yaml:20:") {
			t.Errorf("%s: %v, want line 20 and %q", tc.to, err, tc.reason)
		}
	}
}
