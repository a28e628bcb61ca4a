package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/serve"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
)

// TestServeInstantKilled kills a cairn serve (SIGKILL) while an instant
// recovery session it started through the API runs: the VM, its NFS
// datastore and the session directory stay behind; the next cairn serve
// removes them before it starts a session of its own.
func TestServeInstantKilled(t *testing.T) {
	bin := buildCairn(t)
	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{{Name: "app", Disks: []esxsim.DiskSpec{{Size: 8 << 20}}}}})
	env := []string{"CAIRN_VC_USER=" + sim.User, "CAIRN_VC_PASSWORD=" + sim.Password}
	repo := cliRepo(t)
	if r := runCairn(t, env, "--repo", repo, "backup", "--vcenter", sim.URL.String(), "--thumbprint", sim.Thumbprint, "--vm", "app", "--transport", "file"); r.code != 0 {
		t.Fatalf("backup: %s", r.stderr)
	}
	dir := t.TempDir()
	creds := filepath.Join(dir, "credentials")
	if err := os.WriteFile(creds, []byte(sim.User+"\n"+sim.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pm := serveFreeAddr(t) // the simulator asks this portmapper (ESXi asks port 111)
	sim.SetNFSPortmapper(pm)
	_, pmPort, _ := net.SplitHostPort(pm)
	listen := serveFreeAddr(t)
	sessions := filepath.Join(dir, "instant")
	cfgFile := filepath.Join(dir, "cairn.yaml")
	if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf(`repository: %s
listen: %s
vcenters:
  - name: sim
    url: %s
    credentials: %s
    thumbprint: %q
instant:
  session_dir: %s
  nfs_host: 127.0.0.1
  nfs_port: 0
  portmap_port: %s
`, repo, listen, sim.URL, creds, sim.Thumbprint, sessions, pmPort)), 0o600); err != nil {
		t.Fatal(err)
	}
	api := serveAPI{base: "http://" + listen, repo: repo}
	conn := connectSim(t, sim)
	session := func(id string) serve.InstantRecord {
		var list []serve.InstantRecord
		api.getJSON("/api/v1/instant", &list)
		for _, r := range list {
			if r.ID == id {
				return r
			}
		}
		return serve.InstantRecord{}
	}

	logs := &serveLogBuffer{}
	srv, exited := serveStartChild(t, bin, logs, "serve", "--config", cfgFile)
	serveWaitFor(t, "serve to answer", exited, logs, func() bool {
		var v any
		return api.getJSON("/api/v1/instant", &v)
	})
	resp, err := api.post("/api/v1/instant", strings.NewReader(`{"vm": "app", "name": "app-killed", "power_on": true}`))
	if err != nil {
		t.Fatal(err)
	}
	var started map[string]string
	json.NewDecoder(resp.Body).Decode(&started)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /api/v1/instant: %d %v", resp.StatusCode, started)
	}
	serveWaitFor(t, "the session to run", exited, logs, func() bool { return session(started["id"]).State == serve.InstantRunning })
	// the console lists the running session with Migrate and Stop
	tok, err := serve.ReadToken(repo)
	if err != nil {
		t.Fatal(err)
	}
	render := consoleRenderer(requireChromium(t), api.base)
	dom := render(t, "token="+url.QueryEscape(tok)+"&next="+url.QueryEscape("/jobs"))
	for _, want := range []string{"Instant recovery sessions", "<td>" + started["id"] + "</td>", "<td>app-killed</td>", ">Migrate</button>", ">Stop</button>"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the jobs view lacks %q:\n%s", want, dom)
		}
	}
	srv.Process.Kill()
	<-exited
	if len(sim.NASDatastores()) != 1 {
		t.Fatalf("a killed serve's datastore is gone already: %+v", sim.NASDatastores())
	}
	if _, err := conn.LookupVM(context.Background(), "app-killed"); err != nil {
		t.Fatalf("a killed serve's VM is gone already: %v", err)
	}

	logs2 := &serveLogBuffer{}
	srv2, exited2 := serveStartChild(t, bin, logs2, "serve", "--config", cfgFile)
	t.Cleanup(func() {
		srv2.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited2:
		case <-time.After(30 * time.Second):
		}
	})
	serveWaitFor(t, "the next serve to remove what the killed one left", exited2, logs2, func() bool {
		_, err := os.Stat(filepath.Join(sessions, started["id"]))
		return os.IsNotExist(err)
	})
	if ds := sim.NASDatastores(); len(ds) != 0 {
		t.Errorf("NFS datastore of the killed serve's session left: %+v\n%s", ds, logs2)
	}
	if _, err := conn.LookupVM(context.Background(), "app-killed"); err == nil {
		t.Errorf("VM of the killed serve's session left\n%s", logs2)
	}
	// the start was recorded; the killed session's end never was
	recs, err := backupd.NewJobLog(repo).List()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		if r.Kind == backupd.JobInstant && r.Action == "start" && r.Target == "app-killed" && r.State == backupd.JobOK {
			n++
		}
	}
	if n != 1 {
		t.Errorf("job log: %d ok start records of app-killed, want 1: %+v", n, recs)
	}
}
