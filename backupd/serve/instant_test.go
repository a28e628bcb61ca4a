package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
)

// TestServeInstant runs instant recovery sessions through the API on the
// simulated vCenter (which mounts the session's NFS export for real):
// a session started, listed running with its VM powered on from the NFS
// datastore, a second one refused by the cap (429) and by a taken
// nfs_host (409), the first migrated (disks on datastore1, the NFS
// datastore gone, the session ended), one stopped (VM and datastore
// gone), one left running when serve stops (stopped with it), and the job
// log's records of every step.
func TestServeInstant(t *testing.T) {
	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{{Name: "app", Disks: []esxsim.DiskSpec{{Size: 8 << 20}}}}})
	ctx := context.Background()
	dir := t.TempDir()
	repoDir := filepath.Join(dir, "repo")
	if err := blockmap.Init(ctx, repoDir, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	repo, err := blockmap.Open(ctx, repoDir, blockmap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := vsphere.Connect(ctx, vsphere.ConnectOptions{URL: sim.URL.String(), Credentials: vsphere.Credentials{User: sim.User, Password: sim.Password}, Thumbprint: sim.Thumbprint})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := backupd.BackupVM(ctx, repo, conn, "app", backupd.JobOptions{Transports: []string{"file"}}); err != nil {
		t.Fatal(err)
	}
	repo.Close()
	creds := filepath.Join(dir, "credentials")
	if err := os.WriteFile(creds, []byte(sim.User+"\n"+sim.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// the simulator asks this portmapper (ESXi asks port 111)
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pmPort := pl.Addr().(*net.TCPAddr).Port
	pl.Close()
	sim.SetNFSPortmapper(fmt.Sprintf("127.0.0.1:%d", pmPort))
	sessions := filepath.Join(dir, "instant")
	cfg, err := ParseConfig("cairn.yaml", []byte(fmt.Sprintf(`repository: %s
listen: 127.0.0.1:0
vcenters:
  - name: sim
    url: %s
    credentials: %s
    thumbprint: %q
instant:
  max_sessions: 1
  session_dir: %s
  nfs_host: 127.0.0.1
  nfs_port: 0
  portmap_port: %d
`, repoDir, sim.URL, creds, sim.Thumbprint, sessions, pmPort)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(rctx) }()
	stopped := false
	stopServe := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(stopServe)
	api := func(method, path, body string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
		return rec
	}
	start := func(body string) string {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for { // Run opens the repository
			rec := api("POST", "/api/v1/instant", body)
			if rec.Code == http.StatusServiceUnavailable && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			if rec.Code != http.StatusAccepted {
				t.Fatalf("POST /api/v1/instant %s: %d %s", body, rec.Code, rec.Body)
			}
			var out map[string]string
			json.Unmarshal(rec.Body.Bytes(), &out)
			return out["id"]
		}
	}
	session := func(id string) InstantRecord {
		t.Helper()
		var list []InstantRecord
		if err := json.Unmarshal(api("GET", "/api/v1/instant", "").Body.Bytes(), &list); err != nil {
			t.Fatal(err)
		}
		for _, r := range list {
			if r.ID == id {
				return r
			}
		}
		t.Fatalf("session %s not listed: %+v", id, list)
		return InstantRecord{}
	}
	waitState := func(id string, states ...string) InstantRecord {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			r := session(id)
			for _, st := range states {
				if r.State == st {
					return r
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("session %s is %s (want %v): %+v", id, r.State, states, r)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	powerState := func(vm string) types.VirtualMachinePowerState {
		t.Helper()
		ref, err := conn.LookupVM(ctx, vm)
		if err != nil {
			t.Fatalf("VM %s: %v", vm, err)
		}
		st, err := object.NewVirtualMachine(conn.Client, ref).PowerState(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	gone := func(what, vm string) {
		t.Helper()
		if ds := sim.NASDatastores(); len(ds) != 0 {
			t.Errorf("%s: NFS datastores left: %+v", what, ds)
		}
		if _, err := conn.LookupVM(ctx, vm); err == nil {
			t.Errorf("%s: VM %s left", what, vm)
		}
	}

	// start: the VM runs from the NFS datastore
	id := start(`{"vm": "app", "name": "app-instant", "power_on": true, "migrate_to": "datastore1"}`)
	r := waitState(id, InstantRunning, InstantFailed)
	if r.State != InstantRunning || r.VM != "app-instant" || !strings.HasPrefix(r.Datastore, "cairn-app-") || r.MoRef == "" {
		t.Fatalf("started session: %+v", r)
	}
	if nas := sim.NASDatastores(); len(nas) != 1 || nas[0].Name != r.Datastore || nas[0].RemoteHost != "127.0.0.1" {
		t.Errorf("NFS datastores: %+v", nas)
	}
	if st := powerState("app-instant"); st != types.VirtualMachinePowerStatePoweredOn {
		t.Errorf("instant VM is %s", st)
	}
	// the cap, and a second session on the same address
	if rec := api("POST", "/api/v1/instant", `{"vm": "app", "name": "app-two", "nfs_host": "127.0.0.2"}`); rec.Code != http.StatusTooManyRequests || !strings.Contains(rec.Body.String(), "max_sessions") {
		t.Errorf("a session beyond max_sessions: %d %s", rec.Code, rec.Body)
	}
	if rec := api("POST", "/api/v1/instant", `{"vm": "app", "name": "app-two"}`); rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), id) {
		t.Errorf("a second session on the same nfs_host: %d %s", rec.Code, rec.Body)
	}
	for _, bad := range []string{`{}`, `{"vm": "app", "nfs_host": "esx.example"}`, `{"vm": "app", "host": "h", "cluster": "c"}`, `{"vm": "app", "bogus": 1}`} {
		if rec := api("POST", "/api/v1/instant", bad); rec.Code != http.StatusBadRequest {
			t.Errorf("POST %s: %d %s", bad, rec.Code, rec.Body)
		}
	}
	if rec := api("POST", "/api/v1/instant/instant-nope/stop", ""); rec.Code != http.StatusNotFound {
		t.Errorf("stop of an unknown session: %d %s", rec.Code, rec.Body)
	}

	// a migration that fails leaves the session running, with the error
	if rec := api("POST", "/api/v1/instant/"+id+"/migrate", `{"datastore": "no-such-datastore"}`); rec.Code != http.StatusAccepted {
		t.Fatalf("migrate to a missing datastore: %d %s", rec.Code, rec.Body)
	}
	deadline := time.Now().Add(60 * time.Second)
	for r = session(id); r.State != InstantRunning || r.Error == ""; r = session(id) {
		if time.Now().After(deadline) || (r.State != InstantRunning && r.State != InstantMigrating) {
			t.Fatalf("session after a failed migration: %+v", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(r.Error, "no-such-datastore") || len(sim.NASDatastores()) != 1 {
		t.Errorf("failed migration: error %q, NFS datastores %+v", r.Error, sim.NASDatastores())
	}
	if st := powerState("app-instant"); st != types.VirtualMachinePowerStatePoweredOn {
		t.Errorf("after a failed migration the VM is %s", st)
	}

	// migrate: disks on datastore1, the NFS datastore removed, the session ended
	if rec := api("POST", "/api/v1/instant/"+id+"/migrate", ""); rec.Code != http.StatusAccepted {
		t.Fatalf("migrate: %d %s", rec.Code, rec.Body)
	}
	r = waitState(id, InstantMigrated, InstantFailed)
	if r.State != InstantMigrated || r.MigratedTo != "datastore1" || r.End.IsZero() {
		t.Fatalf("migrated session: %+v", r)
	}
	if ds := sim.NASDatastores(); len(ds) != 0 {
		t.Errorf("after migrate the NFS datastore is still mounted: %+v", ds)
	}
	if st := powerState("app-instant"); st != types.VirtualMachinePowerStatePoweredOn {
		t.Errorf("migrated VM is %s", st)
	}
	if _, err := os.Stat(filepath.Join(sim.DatastoreDir, "app-instant")); err != nil {
		t.Errorf("migrated VM's files on datastore1: %v", err)
	}
	if _, err := os.Stat(filepath.Join(sessions, id)); !os.IsNotExist(err) {
		t.Errorf("session directory after migrate: %v", err)
	}
	if rec := api("POST", "/api/v1/instant/"+id+"/stop", ""); rec.Code != http.StatusConflict {
		t.Errorf("stop of a migrated session: %d %s", rec.Code, rec.Body)
	}

	// stop: VM and datastore removed
	id = start(`{"vm": "app", "name": "app-stop"}`)
	if r := waitState(id, InstantRunning, InstantFailed); r.State != InstantRunning {
		t.Fatalf("second session: %+v", r)
	}
	if rec := api("POST", "/api/v1/instant/"+id+"/stop", ""); rec.Code != http.StatusAccepted {
		t.Fatalf("stop: %d %s", rec.Code, rec.Body)
	}
	if r := waitState(id, InstantStopped, InstantFailed); r.State != InstantStopped || r.Error != "" {
		t.Errorf("stopped session: %+v", r)
	}
	gone("stop", "app-stop")

	// serve stops with a session running: the session is stopped
	id = start(`{"vm": "app", "name": "app-left", "power_on": true}`)
	if r := waitState(id, InstantRunning, InstantFailed); r.State != InstantRunning {
		t.Fatalf("third session: %+v", r)
	}
	stopServe()
	if r := session(id); r.State != InstantStopped || !strings.Contains(r.Error, "end of cairn serve") {
		t.Errorf("session of a stopped serve: %+v", r)
	}
	gone("serve stopped", "app-left")
	if left, _ := os.ReadDir(sessions); len(left) != 0 {
		t.Errorf("session directories left: %v", left)
	}

	// the job log has each step
	recs, err := backupd.NewJobLog(repoDir).List()
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, jr := range recs {
		if jr.Kind == backupd.JobInstant {
			steps = append(steps, jr.Action+" "+jr.Target+" "+jr.State)
		}
	}
	want := "start app-instant ok,migrate app-instant failed,migrate app-instant ok,start app-stop ok,stop app-stop ok,start app-left ok,stop app-left ok"
	if got := strings.Join(steps, ","); got != want {
		t.Errorf("job log instant records:\n%s\nwant\n%s", got, want)
	}
}
