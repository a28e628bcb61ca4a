package serve

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// bootImported makes a repository holding one imported point of VM
// "bc-vm" whose 1 MiB disk is disk, and the config of a job that boot
// checks it when serve starts (firmware bios), telling failures to hook.
func bootImported(t *testing.T, disk []byte, hook string) (repo string, p blockmap.Point, cfg *Config) {
	t.Helper()
	testutil.RequireTools(t, "qemu-system-x86_64", "qemu-img")
	repo = filepath.Join(t.TempDir(), "repo")
	if err := blockmap.Init(context.Background(), repo, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(img, disk, 0o600); err != nil {
		t.Fatal(err)
	}
	withRepo(t, repo, func(r *blockmap.Repo) {
		var err error
		p, err = backupd.Import(context.Background(), r, "bc-vm", []backupd.ImportDisk{{Name: "disk0", Source: img}}, backupd.ImportOptions{})
		if err != nil {
			t.Fatal(err)
		}
	})
	cfg, err := ParseConfig("cairn.yaml", []byte(fmt.Sprintf(`repository: %s
listen: 127.0.0.1:0
jobs:
  - name: bc
    vms: [bc-vm]
    boot_check: {schedule: 1h, firmware: bios, timeout: 5m}
notify:
  targets:
    - webhook: {url: %s}
`, repo, hook)))
	if err != nil {
		t.Fatal(err)
	}
	return repo, p, cfg
}

// TestBootCheckStoppedKeepsNoVerdict: serve stopping (SIGTERM) while a
// boot check runs qemu keeps no verdict beside the point (cairn points
// and the mount go on showing the last real one), tells nothing, counts
// no failure and logs no error: the check did not fail, it was stopped.
func TestBootCheckStoppedKeepsNoVerdict(t *testing.T) {
	work := t.TempDir()
	t.Setenv("TMPDIR", work) // where the boot check's serial log is
	spin := make([]byte, 1<<20)
	copy(spin, []byte{0xeb, 0xfe}) // jmp $: spins, never a verdict
	spin[510], spin[511] = 0x55, 0xaa
	h := newPayloadHook(t)
	repo, _, cfg := bootImported(t, spin, h.srv.URL)
	var logs lockedBuffer
	s, stop := runUntilStoppedLog(t, repo, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	// running: qemu started and SeaBIOS wrote to the serial console
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		logs, _ := filepath.Glob(filepath.Join(work, "cairn-serve-boot-*", "serial.log"))
		if len(logs) == 1 {
			if fi, err := os.Stat(logs[0]); err == nil && fi.Size() > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the boot check never started qemu")
		}
	}
	stop()
	if kept, _ := filepath.Glob(filepath.Join(repo, "bootchecks", "bc-vm", "*", "result.json")); len(kept) != 0 {
		data, _ := os.ReadFile(kept[0])
		t.Errorf("a boot check stopped with serve kept a verdict: %s", data)
	}
	if got := h.kinds(); got != "" {
		t.Errorf("a boot check stopped with serve was told: %s", got)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if m := rec.Body.String(); strings.Contains(m, `cairn_boot_check_failures_total{vm="bc-vm"}`) || strings.Contains(m, `cairn_boot_check_ok{vm="bc-vm"}`) {
		t.Errorf("a boot check stopped with serve counted as failed:\n%s", grepLines(m, "cairn_boot_check"))
	}
	if l := logs.String(); strings.Contains(l, "level=ERROR") || !strings.Contains(l, "boot check stopped with the server") {
		t.Errorf("log:\n%s", l)
	}
}

// grepLines keeps the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
