package serve

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
)

// TestServeChecksVCentersAtStart: at start the server logs in to every
// vCenter a job uses, so a wrong password (or an untrusted certificate, or
// a vCenter down) shows in the status at once, not at the first run of a
// nightly job; the good vCenter is shown ok.
func TestServeChecksVCentersAtStart(t *testing.T) {
	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{{Name: "web-1", Disks: []esxsim.DiskSpec{{Size: 1 << 20}}}}})
	bad := filepath.Join(t.TempDir(), "bad-credentials")
	if err := os.WriteFile(bad, []byte(sim.User+"\nwrong-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startAPIServer(t, sim, simConfigHeader+`  - name: typo
    url: %[2]s
    credentials: `+bad+`
    thumbprint: %[4]q
jobs:
  - name: web
    vcenter: sim
    vms: [web-1]
    schedule: "30 22 * * *"
  - name: other
    vcenter: typo
    vms: [web-1]
    schedule: "30 22 * * *"
`, nil)
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := a.s.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(st.VCenters) == 2 {
			if v := st.VCenters[0]; v.Name != "sim" || !v.OK || v.Checked.IsZero() {
				t.Errorf("good vCenter: %+v", v)
			}
			if v := st.VCenters[1]; v.Name != "typo" || v.OK || !strings.Contains(v.Error, "wrong user name or password") {
				t.Errorf("vCenter with a wrong password: %+v", v)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no vCenter checks in the status: %+v", st.VCenters)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(a.s.Runs()) != 0 {
		t.Errorf("the check ran jobs: %+v", a.s.Runs())
	}
}
