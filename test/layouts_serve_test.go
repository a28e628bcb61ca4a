package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
	"github.com/cairnbackup/cairn/internal/lab"
	"github.com/cairnbackup/cairn/internal/lvmfixture"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestLayoutsThroughServe gives two VMs of the simulated vCenter real
// disk contents — the CentOS-style VM of buildCentOS (MD raid1 /boot, LVM
// on MD raid1 for root and swap, two disks) and the SUSE-style VM of
// buildSUSE (btrfs root with subvolumes and a read-only snapshot) — backs
// them up with `cairn serve` (snapshot, CBT, file transport) and browses
// them through serve's own mount: fs/md/boot and fs/lvm/centos/root equal
// their source trees, the btrfs root, subvolumes and snapshot equal a
// kernel mount of the same filesystem (getfattr -R -d -m - -e hex and
// getfacl -R of the whole btrfs too). A second SUSE point after a change
// shows the new content, the first still the old.
func TestLayoutsThroughServe(t *testing.T) {
	testutil.RequireFUSE(t)
	testutil.RequireTools(t, append(lvmfixture.Required, "mkfs.ext4", "mdadm", "mkfs.btrfs", "btrfs", "sgdisk", "mount")...)
	bin := buildCairn(t)
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "centos"), 0o755)
	os.Mkdir(filepath.Join(dir, "suse"), 0o755)
	centos := buildCentOS(t, filepath.Join(dir, "centos"))
	suse := buildSUSE(t, filepath.Join(dir, "suse"))

	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{
		{Name: "centos", Disks: []esxsim.DiskSpec{{Size: centosDiskSize}, {Size: centosDiskSize}}},
		{Name: "suse", Disks: []esxsim.DiskSpec{{Size: suseDiskSize}}},
	}})
	sync := func(vm string, images ...string) {
		t.Helper()
		g, err := sim.Guest(vm)
		if err != nil {
			t.Fatal(err)
		}
		for i, img := range images {
			if _, err := g.SyncFromImage(i, img); err != nil {
				t.Fatal(err)
			}
		}
	}
	sync("centos", centos.disks...)
	sync("suse", suse.disk)

	creds := filepath.Join(dir, "vc-credentials")
	if err := os.WriteFile(creds, []byte(sim.User+"\n"+sim.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := serveFreeAddr(t)
	cfg := lab.ServeConfig{
		Repository:  filepath.Join(dir, "repo"),
		Mount:       filepath.Join(dir, "mnt"),
		Listen:      listen,
		Parallelism: lab.ParallelismConfig{VMs: 2, PerHost: 2},
		Verify:      lab.VerifyConfig{Schedule: "@every 24h"},
		VCenters:    []lab.VCenterConfig{{Name: "sim", URL: sim.URL.String(), Credentials: creds, Thumbprint: sim.Thumbprint}},
		Jobs: []lab.JobConfig{{
			Name: "layouts", VCenter: "sim", VMs: []string{"centos", "suse"}, Schedule: "@every 24h",
			Retention: lab.RetentionConfig{KeepLast: 5}, Transports: []string{"file"}, Quiesce: "auto", RetryDelay: "10s",
		}},
	}
	cfgFile := writeServeConfig(t, dir, cfg)
	var logs serveLogBuffer
	srv, exited := serveStartChild(t, bin, &logs, "serve", "--config", cfgFile)
	// serve stops on SIGTERM and releases its mount (a SIGKILL would leave
	// a dead FUSE mount in the test's directory).
	t.Cleanup(func() {
		srv.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("serve exited with %v:\n%s", err, logs.String())
			}
		case <-time.After(30 * time.Second):
			t.Errorf("serve did not stop within 30s of SIGTERM")
			exec.Command("umount", "-l", cfg.Mount).Run()
		}
	})
	api := serveAPI{base: "http://" + listen, repo: cfg.Repository}
	serveWaitFor(t, "serve to answer", exited, &logs, func() bool {
		var v any
		return api.getJSON("/api/v1/vms", &v)
	})
	pointRe := regexp.MustCompile(`: point (\S+)`)
	backup := func(vm string) string {
		t.Helper()
		out := mustCairn(t, "--repo", cfg.Repository, "trigger", "--vm", vm, "--wait")
		m := pointRe.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("cairn trigger --vm %s --wait:\n%s\n%s", vm, out, logs.String())
		}
		return m[1]
	}
	fsOf := func(vm, point string, p ...string) string {
		return filepath.Join(append([]string{cfg.Mount, vm, point, "fs"}, p...)...)
	}
	waitFor := func(path string) {
		t.Helper()
		serveWaitFor(t, path, exited, &logs, func() bool { _, err := os.Stat(path); return err == nil })
	}

	t.Run("centos", func(t *testing.T) {
		point := backup("centos")
		waitFor(fsOf("centos", point))
		if got := listNames(t, fsOf("centos", point)); got != "lvm,md,scsi0-0,scsi0-1" {
			t.Fatalf("fs/ lists %s", got)
		}
		cmp := compareOpts{modes: true, links: true, mtimeGran: time.Second}
		noLost := func(rel string) bool { return rel == "lost+found" }
		compareTrees(t, walkTree(t, centos.srcBoot, nil), walkTree(t, fsOf("centos", point, "md", "boot"), noLost), cmp)
		compareTrees(t, walkTree(t, centos.srcRoot, nil), walkTree(t, fsOf("centos", point, "lvm", "centos", "root"), noLost), cmp)
		if _, err := os.Stat(fsOf("centos", point, "md", "ERROR.txt")); !os.IsNotExist(err) {
			t.Errorf("complete arrays have an md/ERROR.txt: %v", err)
		}
	})

	t.Run("suse", func(t *testing.T) {
		sdir := filepath.Join(dir, "suse")
		first := backup("suse")
		compareSUSE := func(point string) {
			t.Helper()
			root := fsOf("suse", point, "scsi0-0", "p2")
			waitFor(root)
			suse.withKernelMount(t, sdir, "loop,ro", func(kmnt string) {
				suse.compareWithKernel(t, root, kmnt)
			})
		}
		compareSUSE(first)
		// A change in subvolume @home between two backups.
		changed := filepath.Join("@home", "data", "generation-2.txt")
		suse.withKernelMount(t, sdir, "loop", func(kmnt string) {
			if err := os.WriteFile(filepath.Join(kmnt, changed), []byte("second generation\n"), 0o640); err != nil {
				t.Fatal(err)
			}
		})
		suse.writeDisk(t)
		sync("suse", suse.disk)
		second := backup("suse")
		if second == first {
			t.Fatalf("the second backup made no new point (%s)", first)
		}
		compareSUSE(second)
		if b, err := os.ReadFile(fsOf("suse", second, "scsi0-0", "p2", changed)); err != nil || string(b) != "second generation\n" {
			t.Errorf("second point: %s = %q %v", changed, b, err)
		}
		if _, err := os.Stat(fsOf("suse", first, "scsi0-0", "p2", changed)); !os.IsNotExist(err) {
			t.Errorf("first point has %s: %v", changed, err)
		}
	})
	if strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Errorf("serve logged errors:\n%s", logs.String())
	}
}
