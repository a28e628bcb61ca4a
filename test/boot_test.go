package test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/boot"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
	"github.com/cairnbackup/cairn/internal/guestimg"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// guestImage builds (or takes from the cache) a test guest.
func guestImage(t *testing.T, kind, marker string) string {
	t.Helper()
	p, err := guestimg.Build(guestimg.Spec{Kind: kind, Marker: marker})
	if err != nil {
		t.Fatalf("build %s guest: %v", kind, err)
	}
	return p
}

// treeHash hashes every file under dir (names, sizes, contents).
func treeHash(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		fmt.Fprintf(h, "%s\n", strings.TrimPrefix(p, dir))
		_, err = io.Copy(h, f)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// cairnBootProcs lists running qemu processes started by cairn boot.
func cairnBootProcs() []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmd, []byte("qemu-system")) && bytes.Contains(cmd, []byte("cairn-boot\x00")) {
			out = append(out, e.Name())
		}
	}
	return out
}

const (
	efiSATAConfig = `{"version":1,"name":"grubvm","firmware":"efi","cpus":1,"memory_mb":512,
	"controllers":[{"key":15000,"type":"ahci","bus":0}],
	"disks":[{"name":"sata0-0","key":16000,"controller_key":15000,"bus":0,"unit":0,"capacity":67108864,"provisioning":"thin"}],"nics":[]}`
	biosLSIConfig = `{"version":1,"name":"panicvm","firmware":"bios","cpus":1,"memory_mb":512,
	"controllers":[{"key":1000,"type":"lsilogic","bus":0}],
	"disks":[{"name":"scsi0-0","key":2000,"controller_key":1000,"bus":0,"unit":0,"capacity":67108864,"provisioning":"thin"}],"nics":[{"key":4000,"adapter_type":"e1000"}]}`
)

// TestBootPoints boots real guests from points under qemu: a BIOS guest
// on pvscsi backed up through the simulated vCenter (an older point boots
// into its older state; cairn boot and --stop), an EFI guest on SATA, and
// the failures: a kernel panic, a GRUB prompt, an empty disk; a qemu that
// crashes. Nothing is written to the repository, and no qemu survives.
func TestBootPoints(t *testing.T) {
	testutil.RequireTools(t, append([]string{"qemu-system-x86_64", "qemu-img"}, guestimg.Tools...)...)
	testutil.RequireFUSE(t)
	bios1 := guestImage(t, guestimg.KindBIOS, "gen1")
	bios2 := guestImage(t, guestimg.KindBIOS, "gen2")
	efi := guestImage(t, guestimg.KindEFI, "efi")
	panicImg := guestImage(t, guestimg.KindPanic, "panic")
	grub := guestImage(t, guestimg.KindGRUBPrompt, "")
	empty := guestImage(t, guestimg.KindEmpty, "")

	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{
		{Name: "bguest", NICs: []esxsim.NICSpec{{}}, Disks: []esxsim.DiskSpec{{Size: guestimg.Size}, {Size: 8 << 20, Provisioning: "thick"}}},
		{Name: "eguest", Firmware: "efi", NICs: []esxsim.NICSpec{{Type: "e1000"}},
			Disks: []esxsim.DiskSpec{{Size: guestimg.Size, Controller: esxsim.ControllerSATA}, {Size: 8 << 20, Controller: esxsim.ControllerNVMe}}},
	}})
	conn := connectSim(t, sim)
	ctx := context.Background()
	repoDir := filepath.Join(t.TempDir(), "repo")
	mustCairn(t, "--repo", repoDir, "init")
	backupImage := func(vm, img string) string {
		g, err := sim.Guest(vm)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := g.SyncFromImage(0, img); err != nil {
			t.Fatal(err)
		}
		repo := openTestRepo(t, repoDir)
		defer repo.Close()
		res, err := backupd.BackupVM(ctx, repo, conn, vm, backupd.JobOptions{Transports: []string{"file"}})
		if err != nil {
			t.Fatalf("backup %s: %v", vm, err)
		}
		return res.PointID
	}
	p1 := backupImage("bguest", bios1)
	backupImage("bguest", bios2)
	backupImage("eguest", efi)
	dir := t.TempDir()
	for _, imp := range []struct{ vm, disk, cfg, img string }{
		{"panicvm", "scsi0-0", biosLSIConfig, panicImg}, {"grubvm", "sata0-0", efiSATAConfig, grub}, {"emptyvm", "scsi0-0", "", empty},
	} {
		args := []string{"--repo", repoDir, "import", "--vm", imp.vm, "--disk", imp.disk}
		if imp.cfg != "" {
			f := filepath.Join(dir, imp.vm+".json")
			os.WriteFile(f, []byte(imp.cfg), 0o644)
			args = append(args, "--vm-config", f)
		}
		mustCairn(t, append(args, imp.img)...)
	}
	// a point without configuration needs --firmware
	if res := runCairn(t, nil, "--repo", repoDir, "verify-boot", "--vm", "emptyvm"); res.code == 0 || !strings.Contains(res.stderr, "--firmware") {
		t.Errorf("verify-boot of a point without configuration: %d %s", res.code, res.stderr)
	}
	if res := runCairn(t, nil, "--repo", repoDir, "boot", "--vm", "nosuchvm"); res.code == 0 || !strings.Contains(res.stderr, "nosuchvm") {
		t.Errorf("boot of an unknown VM: %d %s", res.code, res.stderr)
	}
	before := treeHash(t, filepath.Join(repoDir, "images"))

	type check struct {
		vm, point, pattern, firmware string
		verdict, reason              string
	}
	checks := []check{
		{"bguest", p1, "CAIRN-GUEST-UP gen1", "", boot.VerdictBooted, "gen1"},
		{"eguest", "latest", "", "", boot.VerdictBooted, "CAIRN-GUEST-UP"},
		{"panicvm", "latest", "", "", boot.VerdictFailed, "kernel panic"},
		{"grubvm", "latest", "", "", boot.VerdictFailed, "GRUB prompt"},
		{"emptyvm", "latest", "", "bios", boot.VerdictFailed, "no bootable device"},
	}
	sem := make(chan struct{}, 3)
	var wg sync.WaitGroup
	for _, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			args := []string{"--repo", repoDir, "verify-boot", "--vm", c.vm, "--point", c.point, "--timeout", "6m", "--json"}
			if c.pattern != "" {
				args = append(args, "--pattern", c.pattern)
			}
			if c.firmware != "" {
				args = append(args, "--firmware", c.firmware)
			}
			res := runCairn(t, nil, args...)
			var r boot.Result
			if err := json.Unmarshal([]byte(res.stdout), &r); err != nil {
				t.Errorf("%s: verify-boot output: %v\n%s\n%s", c.vm, err, res.stdout, res.stderr)
				return
			}
			if r.Verdict != c.verdict || !strings.Contains(r.Reason, c.reason) || (res.code == 0) != (c.verdict == boot.VerdictBooted) {
				t.Errorf("%s: verdict %s (%s), exit %d; want %s (%s)", c.vm, r.Verdict, r.Reason, res.code, c.verdict, c.reason)
			}
			t.Logf("%s: %s (%s) in %.0f s", c.vm, r.Verdict, r.Reason, r.BootSeconds)
		}()
	}

	// cairn boot of the latest BIOS point, then --stop; and a qemu that dies
	wg.Add(1)
	go func() {
		defer wg.Done()
		sem <- struct{}{}
		defer func() { <-sem }()
		tmp := t.TempDir()
		serial := filepath.Join(tmp, "serial.log")
		cmd := exec.Command(buildCairn(t), "--repo", repoDir, "boot", "--vm", "bguest", "--serial", serial)
		cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Error(err)
			return
		}
		deadline := time.Now().Add(6 * time.Minute)
		for {
			b, _ := os.ReadFile(serial)
			if bytes.Contains(b, []byte("CAIRN-GUEST-UP gen2")) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("cairn boot of the latest point: no gen2 marker:\n%s\n%s", b, stderr.String())
				cmd.Process.Kill()
				cmd.Wait()
				return
			}
			time.Sleep(time.Second)
		}
		if res := runCairn(t, []string{"TMPDIR=" + tmp}, "boot", "--stop", "--vm", "bguest"); res.code != 0 {
			t.Errorf("boot --stop: %s", res.stderr)
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("cairn boot after --stop: %v\n%s", err, stderr.String())
		}
		if !strings.Contains(stderr.String(), "TCG") && !strings.Contains(stderr.String(), "KVM") {
			t.Errorf("cairn boot did not say which accelerator: %s", stderr.String())
		}
		if left, _ := filepath.Glob(filepath.Join(tmp, "cairn-boot-*")); len(left) != 0 {
			t.Errorf("overlays left after --stop: %v", left)
		}

		// qemu crashes: cairn boot ends with an error and removes the overlays
		cmd = exec.Command(buildCairn(t), "--repo", repoDir, "boot", "--vm", "emptyvm", "--firmware", "bios")
		cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
		stderr.Reset()
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Error(err)
			return
		}
		var qemuPid int
		for range 300 {
			if qemuPid = childQEMU(cmd.Process.Pid); qemuPid != 0 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if qemuPid == 0 {
			t.Errorf("no qemu started by cairn boot: %s", stderr.String())
			cmd.Process.Kill()
			cmd.Wait()
			return
		}
		syscall.Kill(qemuPid, syscall.SIGKILL)
		if err := cmd.Wait(); err == nil {
			t.Errorf("cairn boot ended cleanly after qemu was killed")
		}
		if left, _ := filepath.Glob(filepath.Join(tmp, "cairn-boot-*")); len(left) != 0 {
			t.Errorf("overlays left after qemu crashed: %v", left)
		}
	}()
	wg.Wait()

	// a timeout powers the machine off too
	res := runCairn(t, nil, "--repo", repoDir, "verify-boot", "--vm", "bguest", "--timeout", "2s", "--pattern", "never-printed", "--json")
	var tr boot.Result
	if err := json.Unmarshal([]byte(res.stdout), &tr); err != nil || tr.Verdict != boot.VerdictTimeout || res.code == 0 {
		t.Errorf("verify-boot --timeout 2s: %v %+v exit %d", err, tr, res.code)
	}
	if left := cairnBootProcs(); len(left) != 0 {
		t.Errorf("qemu left after a timeout: %v", left)
	}
	// cairn boot killed with SIGKILL: qemu dies with it (PR_SET_PDEATHSIG)
	cmd := exec.Command(buildCairn(t), "--repo", repoDir, "boot", "--vm", "emptyvm", "--firmware", "bios")
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	qemuPid := 0
	for range 300 {
		if qemuPid = childQEMU(cmd.Process.Pid); qemuPid != 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if qemuPid == 0 {
		t.Error("no qemu under cairn boot")
	}
	for i := 0; i < 100 && len(cairnBootProcs()) > 0; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if left := cairnBootProcs(); len(left) != 0 {
		t.Errorf("qemu outlived a killed cairn boot: %v", left)
	}

	// --keep-overlay DIR keeps the overlays after --stop
	keep := filepath.Join(t.TempDir(), "keep")
	tmp := t.TempDir()
	cmd = exec.Command(buildCairn(t), "--repo", repoDir, "boot", "--vm", "emptyvm", "--firmware", "bios", "--keep-overlay", keep)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// running once its state file (for --stop) and its overlay are
	// written: the state file comes first, so --stop also ends a machine
	// still starting, and a stop that early leaves no overlay to keep
	for i := 0; i < 600; i++ {
		_, errState := os.Stat(filepath.Join(tmp, "cairn-boot", "emptyvm.pid"))
		_, errOverlay := os.Stat(filepath.Join(keep, "scsi0-0.qcow2"))
		if errState == nil && errOverlay == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if res := runCairn(t, []string{"TMPDIR=" + tmp}, "boot", "--stop", "--vm", "emptyvm"); res.code != 0 {
		t.Errorf("boot --stop: %s", res.stderr)
		cmd.Process.Kill()
	}
	cmd.Wait()
	if _, err := os.Stat(filepath.Join(keep, "scsi0-0.qcow2")); err != nil {
		t.Errorf("--keep-overlay: %v", err)
	}

	if after := treeHash(t, filepath.Join(repoDir, "images")); after != before {
		t.Error("booting changed the repository's images")
	}
	if left := cairnBootProcs(); len(left) != 0 {
		t.Errorf("qemu processes left: %v", left)
	}
	// results beside the point, shown in the mount and in cairn points
	rd := boot.ResultsDir(repoDir, "bguest", p1)
	if fi, err := os.Stat(rd); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("results dir %s: %v %v", rd, fi, err)
	}
	repo := openTestRepo(t, repoDir)
	t.Cleanup(func() { repo.Close() })
	_, mnt := mountRepo(t, ctx, repo)
	var r boot.Result
	data, err := os.ReadFile(filepath.Join(mnt, "bguest", p1, "boot", "result.json"))
	if err != nil || json.Unmarshal(data, &r) != nil || r.Verdict != boot.VerdictBooted {
		t.Errorf("mount: boot/result.json: %v %s", err, data)
	}
	f, err := os.Open(filepath.Join(mnt, "bguest", p1, "boot", "screenshot.png"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil || img.Bounds().Dx() < 320 {
		t.Errorf("mount: screenshot.png: %v", err)
	}
	out := mustCairn(t, "--repo", repoDir, "points")
	if !strings.Contains(out, "booted") || !strings.Contains(out, "failed") {
		t.Errorf("cairn points has no BOOT verdicts:\n%s", out)
	}
}

func openTestRepo(t *testing.T, dir string) *blockmap.Repo {
	t.Helper()
	repo, err := blockmap.Open(context.Background(), dir, blockmap.Options{Logger: mountLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

// childQEMU finds the qemu process whose parent is pid (0: none yet).
func childQEMU(pid int) int {
	for _, p := range cairnBootProcs() {
		st, err := os.ReadFile(filepath.Join("/proc", p, "stat"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:]))
		var ppid, me int
		if len(f) > 1 {
			fmt.Sscan(f[1], &ppid)
		}
		fmt.Sscan(p, &me)
		if ppid == pid {
			return me
		}
	}
	return 0
}
