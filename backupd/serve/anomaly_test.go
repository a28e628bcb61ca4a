package serve

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd/anomaly"
	"github.com/cairnbackup/cairn/backupd/notify"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// guestText is n bytes of log-like text, different per seed.
func guestText(seed, n int) []byte {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "2026-12-%02d 01:%02d:%02d app[%d]: request %d served in %d ms for user%d\n", seed%28+1, i/60%60, i%60, 4000+seed, i, i*7%300, i%97)
	}
	return []byte(b.String()[:n])
}

// ext4Guest is a real ext4 image (mkfs.ext4 -d) of 100 text files that
// the test changes through a kernel loop mount and syncs into the
// simulated VM's disk (only the blocks that differ, as tracked writes).
type ext4Guest struct {
	img, mnt string
	g        *esxsim.GuestWriter
}

func newExt4Guest(t *testing.T, g *esxsim.GuestWriter) *ext4Guest {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.Mkdir(src, 0o755)
	for i := 0; i < 100; i++ {
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("log%03d.txt", i)), guestText(i, 128<<10), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e := &ext4Guest{img: filepath.Join(dir, "disk.img"), mnt: filepath.Join(dir, "mnt"), g: g}
	os.Mkdir(e.mnt, 0o755)
	if err := os.WriteFile(e.img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(e.img, 32<<20); err != nil {
		t.Fatal(err)
	}
	runTool(t, "mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0,nodiscard", "-d", src, e.img)
	e.sync(t)
	return e
}

func runTool(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func (e *ext4Guest) sync(t *testing.T) {
	t.Helper()
	if _, err := e.g.SyncFromImage(0, e.img); err != nil {
		t.Fatal(err)
	}
}

// change mounts the image, runs edit, unmounts and syncs it in.
func (e *ext4Guest) change(t *testing.T, edit func(root string)) {
	t.Helper()
	runTool(t, "mount", "-o", "loop", e.img, e.mnt)
	edit(e.mnt)
	runTool(t, "umount", e.mnt)
	e.sync(t)
}

// TestSuspiciousChangesServe: a vSphere VM on the simulated vCenter whose
// disk is a real ext4 filesystem, backed up by serve's job with its
// anomaly: thresholds. Ordinary days rewrite a few text files; then
// "ransomware" encrypts 90 of the 100 files in place (AES-CTR, same
// size). That point is flagged: the webhook receives one
// suspicious_changes with the reason, GET /api/v1/points shows the
// verdict, /api/v1/vms the flagged and the last clean point, and retention
// (keep_last 3) keeps the last clean point and the flagged one until POST
// /api/v1/acks acknowledges it.
func TestSuspiciousChangesServe(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4", "mount", "umount")
	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{{Name: "files-1", Disks: []esxsim.DiskSpec{{Size: 32 << 20}}}}})
	h := newPayloadHook(t)
	a := startAPIServer(t, sim, simConfigHeader+`jobs:
  - name: nightly
    vcenter: sim
    vms: [files-1]
    schedule: "0 0 1 1 *"
    retention: {keep_last: 3}
    transports: [file]
    retries: 0
    anomaly: {min_bytes: 4MiB, min_baseline: 2}
notify:
  targets:
    - webhook: {url: "`+h.srv.URL+`"}
`, nil)
	g, err := sim.Guest("files-1")
	if err != nil {
		t.Fatal(err)
	}
	guest := newExt4Guest(t, g)
	ordinary := func(day int) {
		t.Helper()
		guest.change(t, func(root string) {
			for i := 0; i < 4; i++ {
				n := (day*11 + i*23) % 100
				if err := os.WriteFile(filepath.Join(root, fmt.Sprintf("log%03d.txt", n)), guestText(100*day+n, 128<<10), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	var runs []RunRecord
	runs = append(runs, waitRun(t, a, "files-1", "nightly")) // the first backup
	for day := 1; day <= 3; day++ {                          // 2, 3: no baseline yet; 4 normal
		ordinary(day)
		runs = append(runs, waitRun(t, a, "files-1", "nightly"))
	}
	key := make([]byte, 32)
	rand.Read(key)
	blk, _ := aes.NewCipher(key)
	guest.change(t, func(root string) {
		for i := 0; i < 90; i++ {
			path := filepath.Join(root, fmt.Sprintf("log%03d.txt", i))
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			cipher.NewCTR(blk, make([]byte, 16)).XORKeyStream(data, data)
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(data, 0); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
	})
	runs = append(runs, waitRun(t, a, "files-1", "nightly"))
	h.waitKinds(t, "suspicious_changes")
	ev := h.payloads()[0]
	if ev.Severity != notify.Warning || ev.Job != "nightly" || ev.VM != "files-1" || ev.Point != runs[4].Point ||
		!strings.Contains(ev.Error, "changed looks encrypted; this VM's usual") ||
		ev.Details["acknowledge"] != "cairn points ack --vm files-1 --point "+runs[4].Point {
		t.Errorf("suspicious_changes %+v", ev)
	}
	code, body := a.do(t, "GET", "/api/v1/points?vm=files-1", "", nil)
	var pts []blockmap.Point
	if code != 200 || json.Unmarshal([]byte(body), &pts) != nil {
		t.Fatalf("GET points: %d %s", code, body)
	}
	verdicts := map[string]string{}
	for _, p := range pts {
		v, _ := anomaly.ReadVerdict(p)
		verdicts[p.ID] = v.Status
	}
	if verdicts[runs[3].Point] != anomaly.Normal || verdicts[runs[4].Point] != anomaly.Suspicious {
		t.Errorf("verdicts %v (runs %s, %s)", verdicts, runs[3].Point, runs[4].Point)
	}
	vmState := func() VMStatus {
		t.Helper()
		code, body := a.do(t, "GET", "/api/v1/vms", "", nil)
		var vms []VMStatus
		if code != 200 || json.Unmarshal([]byte(body), &vms) != nil || len(vms) != 1 {
			t.Fatalf("GET vms: %d %s", code, body)
		}
		return vms[0]
	}
	if v := vmState(); fmt.Sprint(v.Suspicious) != "["+runs[4].Point+"]" || v.LastClean != runs[3].Point {
		t.Errorf("vms: suspicious %v, last clean %q; want [%s] and %s", v.Suspicious, v.LastClean, runs[4].Point, runs[3].Point)
	}
	// Two ordinary days more: keep_last 3 alone would drop run 4 (the
	// clean point) and run 5 (the flagged one).
	for day := 6; day <= 7; day++ {
		ordinary(day)
		runs = append(runs, waitRun(t, a, "files-1", "nightly"))
	}
	ids := func() []string {
		t.Helper()
		pts, err := a.s.repo.Points(context.Background(), "files-1")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range pts {
			out = append(out, p.ID)
		}
		return out
	}
	want := []string{runs[3].Point, runs[4].Point, runs[5].Point, runs[6].Point}
	if got := ids(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("points after retention %v, want %v (the clean point and the flagged one kept)", got, want)
	}
	if code, body := a.do(t, "POST", "/api/v1/acks", `{"vm":"files-1","point":"`+runs[3].Point+`"}`, nil); code != 409 {
		t.Errorf("ack of a normal point: %d %s", code, body)
	}
	if code, body := a.do(t, "POST", "/api/v1/acks", `{"vm":"files-1","point":"`+runs[4].Point+`","note":"bulk archive"}`, nil); code != 200 {
		t.Fatalf("ack: %d %s", code, body)
	}
	evs, _, err := ReadAudit(a.repo, time.Time{})
	acked := false
	for _, e := range evs {
		acked = acked || (e.Route == "/api/v1/acks" && e.VM == "files-1" && e.Point == runs[4].Point && e.Status == 200)
	}
	if err != nil || !acked {
		t.Errorf("the audit log has no acknowledgement of %s: %v %+v", runs[4].Point, err, evs)
	}
	if v := vmState(); len(v.Suspicious) != 0 || v.LastClean != "" {
		t.Errorf("vms after the ack: suspicious %v, last clean %q", v.Suspicious, v.LastClean)
	}
	ordinary(8)
	runs = append(runs, waitRun(t, a, "files-1", "nightly"))
	want = []string{runs[5].Point, runs[6].Point, runs[7].Point}
	if got := ids(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("points after the ack %v, want %v", got, want)
	}
	if k := h.kinds(); k != "suspicious_changes" {
		t.Errorf("notifications %q, want one suspicious_changes", k)
	}
}

// TestConfigAnomaly: a job's anomaly: block sets the thresholds (sizes
// with suffixes); unset keys keep the defaults; bad values and unknown
// keys are refused with the line and the key.
func TestConfigAnomaly(t *testing.T) {
	with := func(block string) string {
		return strings.Replace(goodConfig, "    quiesce: auto", "    quiesce: auto\n    anomaly: "+block, 1)
	}
	cfg, err := ParseConfig("cairn.yaml", []byte(with("{min_bytes: 1GiB, min_share: 60, baseline_points: 30}")))
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Jobs[0].Anomaly
	if got.MinBytes != 1<<30 || got.MinShare != 60 || got.BaselinePoints != 30 || got.WithDefaults().ShareRise != anomaly.DefaultThresholds.ShareRise {
		t.Errorf("thresholds %+v", got)
	}
	if cfg, err = ParseConfig("cairn.yaml", []byte(goodConfig)); err != nil || cfg.Jobs[0].Anomaly != (anomaly.Thresholds{}) {
		t.Errorf("no anomaly: block: %+v %v", cfg.Jobs[0].Anomaly, err)
	}
	for _, c := range []struct{ block, want string }{
		{"{min_bytes: lots}", "min_bytes \"lots\": want a size"},
		{"{min_share: 120}", "min_share 120 is not a percentage"},
		{"{share_rise: -3}", "share_rise: want a number > 0"},
		{"{baseline_points: 2, min_baseline: 5}", "min_baseline 5 must be between 1 and baseline_points (2)"},
		{"{disabled: maybe}", "disabled: want true or false"},
		{"{min_byte: 1GiB}", "min_byte"},
	} {
		_, err := ParseConfig("cairn.yaml", []byte(with(c.block)))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "cairn.yaml:2") {
			t.Errorf("anomaly: %s: error %v, want one with the line and %q", c.block, err, c.want)
		}
	}
}
