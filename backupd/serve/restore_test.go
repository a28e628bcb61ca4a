package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
)

// TestServeRestore restores a point through POST /api/v1/restores (the
// nfc transport: nothing but the vCenter) and follows it in GET
// /api/v1/restores; the new VM's disk equals the point. Bad requests
// (no vm, an unknown field such as an NBD command, an unknown point)
// are refused.
func TestServeRestore(t *testing.T) {
	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{{Name: "app", Disks: []esxsim.DiskSpec{{Size: 8 << 20}}}}})
	g, _ := sim.Guest("app")
	if err := g.WriteRandom(0, 1<<20, 2<<20, rand.New(rand.NewPCG(1, 2))); err != nil {
		t.Fatal(err)
	}
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
	if _, err := backupd.BackupVM(ctx, repo, conn, "app", backupd.JobOptions{Transports: []string{"file"}}); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	repo.Close()
	creds := filepath.Join(dir, "credentials")
	if err := os.WriteFile(creds, []byte(sim.User+"\n"+sim.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig("cairn.yaml", []byte(fmt.Sprintf(`repository: %s
listen: 127.0.0.1:0
vcenters:
  - name: sim
    url: %s
    credentials: %s
    thumbprint: %q
jobs:
  - name: yearly
    vcenter: sim
    vms: [app]
    schedule: "0 0 1 1 *"
`, repoDir, sim.URL, creds, sim.Thumbprint)))
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
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	api := func(method, path, body string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
		return rec
	}
	deadline := time.Now().Add(30 * time.Second)
	var rec *httptest.ResponseRecorder
	for { // Run opens the repository
		rec = api("POST", "/api/v1/restores", `{"vm": "app", "point": "latest", "name": "app-copy"}`)
		if rec.Code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if rec.Code != http.StatusAccepted {
		t.Fatalf("POST /api/v1/restores: %d %s", rec.Code, rec.Body)
	}
	for _, bad := range []string{`{}`, `{"vm": "app", "nbd_command": "sh -c reboot"}`, `{"vm": "app", "point": "99"}`, `{"vm": "app", "transports": ["ftp"]}`,
		// what the CLI refuses too; in_place with replace would power off the running original
		`{"vm": "app", "in_place": true, "replace": true}`, `{"vm": "app", "name": "app-full", "full": true}`,
		`{"vm": "app", "name": "app-fat", "disk_provisioning": "fat"}`, `{"vm": "app", "name": "app-net", "networks": {"VM Network": ""}}`} {
		if r := api("POST", "/api/v1/restores", bad); r.Code < 400 {
			t.Errorf("POST %s: %d %s", bad, r.Code, r.Body)
		}
	}
	var recs []RestoreRecord
	for {
		if err := json.Unmarshal(api("GET", "/api/v1/restores", "").Body.Bytes(), &recs); err != nil {
			t.Fatal(err)
		}
		if len(recs) == 1 && recs[0].State != StateRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restore did not finish: %+v", recs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if recs[0].State != StateOK || recs[0].Result == nil || recs[0].Result.Disks[0].Transport != backupd.WriteTransportNFC {
		t.Fatalf("restore record %+v", recs[0])
	}
	files, err := sim.DiskLocalPaths("app-copy")
	if err != nil {
		t.Fatal(err)
	}
	src, _ := sim.DiskLocalPaths("app")
	a, _ := os.ReadFile(files["scsi0-0"])
	b, _ := os.ReadFile(src["scsi0-0"])
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Errorf("restored disk (%d bytes) differs from the backed-up one (%d)", len(a), len(b))
	}
}
