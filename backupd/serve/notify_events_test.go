package serve

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd/boot"
	"github.com/cairnbackup/cairn/backupd/notify"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
)

// TestNotifyBootCheckFailed: a boot check that runs and does not boot
// (an empty disk: "No bootable device") tells one boot_check_failed with
// the job, VM, point and the verdict as error, and keeps the verdict.
func TestNotifyBootCheckFailed(t *testing.T) {
	h := newPayloadHook(t)
	repo, p, cfg := bootImported(t, make([]byte, 1<<20), h.srv.URL)
	_, stop := runUntilStopped(t, repo, cfg)
	h.waitKinds(t, "boot_check_failed")
	stop()
	got := h.payloads()
	if len(got) != 1 {
		t.Fatalf("told %q, want one boot_check_failed", h.kinds())
	}
	ev := got[0]
	if ev.Severity != notify.Failure || ev.Job != "bc" || ev.VM != "bc-vm" || ev.Point != p.ID ||
		ev.Error != "failed: no bootable device (serial console)" || !strings.HasPrefix(ev.Title, "FAILURE: point "+p.ID+" of bc-vm did not boot") {
		t.Errorf("boot_check_failed %+v", ev)
	}
	res, ok := boot.LoadResult(repo, "bc-vm", p.ID)
	if !ok || res.Verdict != boot.VerdictFailed {
		t.Errorf("kept verdict %+v %v", res, ok)
	}
}

// TestNotifySourceVerifyAndRetention: a verify against the source that
// finds a change CBT missed and repairs it tells one source_verify_failed
// (warning, the repaired point named); a retention that fails after a
// good backup (catalog.seq cannot be replaced, so the deletion cannot be
// published) tells one retention_failed; the backups themselves are ok.
func TestNotifySourceVerifyAndRetention(t *testing.T) {
	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{{Name: "web-1", Disks: []esxsim.DiskSpec{{Size: 4 << 20}}}}})
	h := newPayloadHook(t)
	a := startAPIServer(t, sim, simConfigHeader+`jobs:
  - name: nightly
    vcenter: sim
    vms: [web-1]
    schedule: "0 0 1 1 *"
    retention: {keep_last: 1}
    verify_against_source_every: 2
    transports: [file]
    retries: 0
notify:
  targets:
    - webhook: {url: "`+h.srv.URL+`"}
`, nil)
	waitRun(t, a, "web-1", "nightly")
	if err := sim.SilentlyMissChange("web-1", 0, 1<<20, 64<<10); err != nil {
		t.Fatal(err)
	}
	r := waitRun(t, a, "web-1", "nightly") // the second: verified against the source
	h.waitKinds(t, "source_verify_failed")
	ev := h.payloads()[0]
	if !strings.HasPrefix(r.SourceVerify, "repaired ") || ev.Severity != notify.Warning || ev.Job != "nightly" || ev.VM != "web-1" ||
		ev.Point != r.Point || ev.Error != "verify against the source: "+r.SourceVerify {
		t.Errorf("run %+v, source_verify_failed %+v", r, ev)
	}

	// catalog.seq a directory: a commit only warns, a deletion fails
	seq := filepath.Join(a.repo, "catalog.seq")
	if err := os.Remove(seq); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(seq, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	waitRun(t, a, "web-1", "nightly")
	h.waitKinds(t, "source_verify_failed retention_failed")
	ev = h.payloads()[1]
	if ev.Severity != notify.Failure || ev.Job != "nightly" || ev.VM != "web-1" || !strings.Contains(ev.Error, blockmap.ErrNotReleased.Error()) ||
		ev.Title != "FAILURE: retention of web-1 failed (job nightly)" {
		t.Errorf("retention_failed %+v", ev)
	}
}
