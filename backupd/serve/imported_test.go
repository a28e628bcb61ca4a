package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/boot"
	"github.com/cairnbackup/cairn/backupd/vmconfig"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/guestimg"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// importedConfig: no vcenters; the repository, the mount (%[2]s), a repository verify every second, and one job without
// vcenter that replicates the imported kvm-* VMs to remote "off".
const importedConfig = `repository: %[1]s
%[2]s
listen: 127.0.0.1:0
timezone: UTC
verify:
  schedule: 1s
jobs:
  - name: kvm-offsite
    vms: ["kvm-*"]
    replicate:
      remote: off
      schedule: 1h
      retention: {keep_last: 1}
`

// importRaw imports a raw image of 1 MiB filled from seed as a point of
// vm, as cairn import does, and returns the point and the image's bytes.
func importRaw(t *testing.T, repo *blockmap.Repo, vm string, seed uint64) (blockmap.Point, []byte) {
	t.Helper()
	data := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(seed, 7))
	for i := range data[:256<<10] {
		data[i] = byte(r.Uint32())
	}
	img := filepath.Join(t.TempDir(), vm+".raw")
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := backupd.Import(context.Background(), repo, vm, []backupd.ImportDisk{{Name: "disk0", Source: img}}, backupd.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p, data
}

// TestServeWithoutVCenter: a config without vcenters (a repository filled
// by cairn import) starts; the API and the metrics answer, the mount
// shows the imported disks byte for byte, the repository verify runs on
// its schedule, and the job without vcenter replicates the kvm-* VMs
// (not other-1) to a real object store with the remote's retention.
// Asking that job for a backup is refused: it backs nothing up.
func TestServeWithoutVCenter(t *testing.T) {
	_, opener := testRemote(t)
	dir := t.TempDir()
	repoDir := filepath.Join(dir, "repo")
	if err := blockmap.Init(context.Background(), repoDir, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.RequireFUSE(t)
	mnt := filepath.Join(dir, "mnt")
	mountLine := "mount: " + mnt
	cfg, err := ParseConfig("cairn.yaml", []byte(fmt.Sprintf(importedConfig, repoDir, mountLine)))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.VCenters) != 0 || len(cfg.Jobs) != 1 || cfg.Jobs[0].BacksUp() {
		t.Fatalf("parsed %+v", cfg)
	}
	var kvm1 blockmap.Point
	var kvm1Data []byte
	var kvm2, other blockmap.Point
	a := runTestServer(t, repoDir, cfg, func(s *Server) {
		s.remotes = opener
		repo, err := blockmap.Open(context.Background(), repoDir, blockmap.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer repo.Close()
		importRaw(t, repo, "kvm-1", 1)
		kvm1, kvm1Data = importRaw(t, repo, "kvm-1", 2)
		kvm2, _ = importRaw(t, repo, "kvm-2", 3)
		other, _ = importRaw(t, repo, "other-1", 4)
	})

	// The API: status lists the job (no backup schedule) and the VMs.
	code, body := a.do(t, http.MethodGet, "/api/v1/status", "", nil)
	var st Status
	if code != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil {
		t.Fatalf("/api/v1/status: %d %s", code, body)
	}
	if len(st.Jobs) != 1 || st.Jobs[0].Name != "kvm-offsite" || len(st.VMs) != 3 {
		t.Fatalf("status jobs %+v vms %+v", st.Jobs, st.VMs)
	}
	if got := a.metric(t, "cairn_points"); got != 4 {
		t.Errorf("cairn_points = %v, want the 4 imported points", got)
	}
	// The job without vcenter backs nothing up; no job backs kvm-1 up.
	if code, body := a.do(t, http.MethodPost, "/api/v1/jobs", `{"vm":"kvm-1","job":"kvm-offsite"}`, nil); code != http.StatusBadRequest || !strings.Contains(body, "no vcenter") {
		t.Errorf("backup request to the job without vcenter: %d %s", code, body)
	}
	if code, body := a.do(t, http.MethodPost, "/api/v1/jobs", `{"vm":"kvm-1"}`, nil); code != http.StatusNotFound {
		t.Errorf("backup request without a job: %d %s", code, body)
	}

	// The mount shows the imported disk as it was.
	{
		got, err := os.ReadFile(filepath.Join(mnt, "kvm-1", "latest", "disks", "disk0.img"))
		if err != nil || !bytes.Equal(got, kvm1Data) {
			t.Fatalf("mounted kvm-1 latest disk0.img: %d bytes, equal %v, %v", len(got), bytes.Equal(got, kvm1Data), err)
		}
	}

	// The repository verify runs on its schedule and finds nothing bad.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := a.s.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !st.Verify.End.IsZero() && !st.Verify.Running {
			if st.Verify.Error != "" || len(st.Verify.Bad) != 0 || st.Verify.Blocks == 0 {
				t.Fatalf("scheduled verify: %+v", st.Verify)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the scheduled repository verify did not run: %+v", st.Verify)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := a.metric(t, "cairn_verify_last_timestamp_seconds"); got <= 0 {
		t.Errorf("cairn_verify_last_timestamp_seconds = %v after a verify", got)
	}

	// The replication of the job's VMs: the newest point of kvm-1 and
	// kvm-2 (keep_last: 1), not other-1.
	var rep ReplicationRecord
	for {
		runs := a.s.Replications()
		if len(runs) > 0 && runs[0].State != StateRunning {
			rep = runs[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replication did not end: %+v", runs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if rep.State != StateOK || rep.Job != "kvm-offsite" || rep.Replicated != 2 || strings.Join(rep.VMs, ",") != "kvm-1,kvm-2" || rep.BytesUploaded <= 0 {
		t.Fatalf("replication run: %+v", rep)
	}
	code, body = a.do(t, http.MethodGet, "/api/v1/remotes/off/points", "", nil)
	var rp struct {
		Points []blockmap.Point `json:"points"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &rp) != nil {
		t.Fatalf("/api/v1/remotes/off/points: %d %s", code, body)
	}
	var got []string
	for _, p := range rp.Points {
		got = append(got, p.VM+" "+p.ID)
	}
	sort.Strings(got)
	if want := "kvm-1 " + kvm1.ID + ",kvm-2 " + kvm2.ID; strings.Join(got, ",") != want {
		t.Fatalf("remote points %v, want %s (not other-1's %s)", got, want, other.ID)
	}
	if got := a.metric(t, "cairn_remote_bytes_uploaded_total"); got != float64(rep.BytesUploaded) {
		t.Errorf("cairn_remote_bytes_uploaded_total = %v, the run uploaded %d", got, rep.BytesUploaded)
	}

	// The job only replicates: its next run (cairn status' NEXT RUN, the
	// console's dashboard) is the next replication, about 1h after the
	// one that ran at start. Before: no schedule and no next run ("-").
	for {
		code, body := a.do(t, http.MethodGet, "/api/v1/status", "", nil)
		var st Status
		if code != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil || len(st.Jobs) != 1 {
			t.Fatalf("/api/v1/status: %d %s", code, body)
		}
		if j := st.Jobs[0]; j.Schedule == "replicate 1h" && j.NextRun.After(time.Now().Add(30*time.Minute)) {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("status of the replicate-only job: schedule %q, next run %v; want replicate 1h and its next replication", j.Schedule, j.NextRun)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestServeWithoutVCenterBootCheck: a job without vcenter boots the
// newest imported point of its VM (imported with its VM configuration, as
// cairn import --vm-config keeps it) on its boot_check schedule, with no
// vCenter anywhere, and records the verdict.
func TestServeWithoutVCenterBootCheck(t *testing.T) {
	testutil.RequireTools(t, append([]string{"qemu-system-x86_64", "qemu-img"}, guestimg.Tools...)...)
	img, err := guestimg.Build(guestimg.Spec{Kind: guestimg.KindBIOS, Marker: "serve"})
	if err != nil {
		t.Fatal(err)
	}
	repoDir := filepath.Join(t.TempDir(), "repo")
	if err := blockmap.Init(context.Background(), repoDir, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig("cairn.yaml", []byte(fmt.Sprintf(`repository: %s
listen: 127.0.0.1:0
jobs:
  - name: kvm-boot
    vms: [kvm-boot]
    boot_check: {schedule: 2s, timeout: 5m}
`, repoDir)))
	if err != nil {
		t.Fatal(err)
	}
	var p blockmap.Point
	a := runTestServer(t, repoDir, cfg, func(s *Server) {
		repo, err := blockmap.Open(context.Background(), repoDir, blockmap.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer repo.Close()
		// As cairn import --vm-config: the firmware and the disk's bus.
		vmcfg := fmt.Sprintf(`{"version":1,"name":"kvm-boot","firmware":"bios","cpus":1,"memory_mb":256,
			"controllers":[{"key":1000,"type":"pvscsi","bus":0}],
			"disks":[{"name":"scsi0-0","key":2000,"controller_key":1000,"bus":0,"unit":0,"capacity":%d,"provisioning":"thin"}],"nics":[]}`, guestimg.Size)
		p, err = backupd.Import(context.Background(), repo, "kvm-boot", []backupd.ImportDisk{{Name: "scsi0-0", Source: img}},
			backupd.ImportOptions{Point: blockmap.PointOptions{Attachments: map[string][]byte{vmconfig.AttachmentConfig: []byte(vmcfg)}}})
		if err != nil {
			t.Fatal(err)
		}
	})
	deadline := time.Now().Add(6 * time.Minute)
	for {
		code, body := a.do(t, http.MethodGet, "/api/v1/points/kvm-boot/latest/boot", "", nil)
		if code == http.StatusOK {
			var res boot.Result
			if err := json.Unmarshal([]byte(body), &res); err != nil {
				t.Fatal(err)
			}
			if res.Verdict != boot.VerdictBooted {
				t.Fatalf("boot check of imported point %s: %+v", p.ID, res)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no boot check of the imported point %s: %d %s", p.ID, code, body)
		}
		time.Sleep(time.Second)
	}
	if got := a.metric(t, `cairn_boot_check_ok\{vm="kvm-boot"\}`); got != 1 {
		t.Errorf("cairn_boot_check_ok{vm=kvm-boot} = %v", got)
	}
	// The job only boot-checks: its next run is the next boot check's.
	st, err := a.s.Status(context.Background())
	if err != nil || len(st.Jobs) != 1 || st.Jobs[0].Schedule != "boot-check 2s" || st.Jobs[0].NextRun.IsZero() {
		t.Errorf("status of the boot-check-only job: %+v %v", st.Jobs, err)
	}
}

// TestBootCheckImportedWithoutConfig: a boot check of an imported point
// without a VM configuration fails with the fix (import --vm-config).
func TestBootCheckImportedWithoutConfig(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	if err := blockmap.Init(ctx, dir, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	repo, err := blockmap.Open(ctx, dir, blockmap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	p, _ := importRaw(t, repo, "kvm-1", 1)
	s, err := New(&Config{Repository: dir}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.repo = repo
	_, err = s.bootCheck(ctx, &BootCheck{Timeout: time.Minute, MaxParallel: 1}, "kvm-1", p.ID)
	if !errors.Is(err, boot.ErrNoConfig) || !strings.Contains(err.Error(), "cairn import --vm-config") || !strings.Contains(err.Error(), "firmware: bios or efi") {
		t.Fatalf("boot check of an imported point without configuration: %v", err)
	}
	// With the job's firmware the point boots (its random disk holds no
	// boot loader, so the verdict is not "booted": what matters is that a
	// machine ran and a verdict was reached).
	testutil.RequireTools(t, "qemu-system-x86_64", "qemu-img")
	res, err := s.bootCheck(ctx, &BootCheck{Timeout: 3 * time.Second, MaxParallel: 1, Firmware: "bios"}, "kvm-1", p.ID)
	if err != nil || res.Firmware != "bios" || res.Verdict == "" || res.Verdict == boot.VerdictBooted {
		t.Fatalf("boot check with firmware: bios: %+v, %v", res, err)
	}
}
