package test

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/cairnbackup/cairn/backupd/vmconfig"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestRestoreCLIOutput walks what `cairn restore vm` prints: --json has
// the totals the text line shows (bytes_written, powered_on), and a quick
// rollback names a disk CBT reports unchanged as such instead of an empty
// transport column.
func TestRestoreCLIOutput(t *testing.T) {
	testutil.RequireTools(t, "nbdkit")
	sim := esxsimtest.Start(t, esxsim.Options{VMs: restoreVMs()[1:]}) // efivm: two disks
	env := []string{"CAIRN_VC_USER=" + sim.User, "CAIRN_VC_PASSWORD=" + sim.Password}
	repo := cliRepo(t)
	g, _ := sim.Guest("efivm")
	rng := rand.New(rand.NewPCG(7, 8))
	for d := range 2 {
		if _, err := g.WriteRandomBlocks(d, 20, esxsim.BlockSize, rng); err != nil {
			t.Fatal(err)
		}
	}
	conn := []string{"--vcenter", sim.URL.String(), "--thumbprint", sim.Thumbprint}
	mustRun := func(args ...string) cairnResult {
		t.Helper()
		r := runCairn(t, env, append([]string{"--repo", repo}, args...)...)
		if r.code != 0 {
			t.Fatalf("cairn %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
		}
		return r
	}
	mustRun(append([]string{"backup", "--vm", "efivm", "--transport", "file"}, conn...)...)

	t.Run("json", func(t *testing.T) {
		r := mustRun(append([]string{"restore", "vm", "--vm", "efivm", "--name", "copy1", "--power-on", "--json"}, conn...)...)
		var out struct {
			VM           string `json:"vm"`
			BytesWritten int64  `json:"bytes_written"`
			PoweredOn    *bool  `json:"powered_on"`
			Disks        []struct {
				BytesWritten int64 `json:"bytes_written"`
			} `json:"disks"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatalf("restore vm --json: %v: %q", err, r.stdout)
		}
		var sum int64
		for _, d := range out.Disks {
			sum += d.BytesWritten
		}
		if out.VM != "copy1" || len(out.Disks) != 2 || sum == 0 || out.BytesWritten != sum {
			t.Fatalf("restore vm --json: bytes_written %d, disks sum %d: %s", out.BytesWritten, sum, r.stdout)
		}
		if out.PoweredOn == nil || !*out.PoweredOn {
			t.Fatalf("restore vm --power-on --json: powered_on missing or false: %s", r.stdout)
		}
		vc := connectSim(t, sim)
		ref, err := vc.LookupVM(context.Background(), "copy1")
		if err != nil {
			t.Fatal(err)
		}
		if st, err := object.NewVirtualMachine(vc.Client, ref).PowerState(context.Background()); err != nil || st != types.VirtualMachinePowerStatePoweredOn {
			t.Fatalf("copy1 is %s (%v), want powered on", st, err)
		}
	})
	t.Run("rollback names an unchanged disk", func(t *testing.T) {
		if _, err := g.WriteRandomBlocks(0, 3, esxsim.BlockSize, rng); err != nil {
			t.Fatal(err)
		}
		vc := connectSim(t, sim)
		ref, _ := vc.LookupVM(context.Background(), "efivm")
		if err := vc.PowerOff(context.Background(), ref); err != nil {
			t.Fatal(err)
		}
		r := mustRun(append([]string{"restore", "vm", "--vm", "efivm", "--in-place", "--transport", "nbd", "--nbd-command", restoreNBDCommand}, conn...)...)
		lines := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n")[1:] {
			name, _, _ := strings.Cut(strings.TrimSpace(l), " ")
			lines[name] = l
		}
		if len(lines) != 2 || !strings.Contains(lines["scsi0-0"], "\tnbd\t") || !strings.Contains(lines["nvme0-0"], "\tunchanged\t") {
			t.Fatalf("rollback output: want the changed disk through nbd and the other unchanged:\n%s", r.stdout)
		}
	})
	t.Run("configuration disk smaller than the point's", func(t *testing.T) {
		ctx := context.Background()
		r, err := blockmap.Open(ctx, repo, blockmap.Options{})
		if err != nil {
			t.Fatal(err)
		}
		p, err := r.ResolvePoint(ctx, "efivm", "1")
		if err != nil {
			t.Fatal(err)
		}
		data, err := r.Attachment(ctx, p, vmconfig.AttachmentConfig)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := vmconfig.Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Disks[0].Capacity /= 2
		small, _ := json.Marshal(cfg)
		file := filepath.Join(t.TempDir(), "small.json")
		if err := os.WriteFile(file, small, 0o600); err != nil {
			t.Fatal(err)
		}
		res := runCairn(t, env, append([]string{"--repo", repo, "restore", "vm", "--vm", "efivm", "--point", "1", "--name", "small", "--vm-config", file}, conn...)...)
		if res.code == 0 || !strings.Contains(res.stderr, "at least as large") || strings.Contains(res.stderr, "vddk") {
			t.Fatalf("restore with a configuration whose disk is too small: exit %d: %s", res.code, res.stderr)
		}
		if _, err := connectSim(t, sim).LookupVM(ctx, "small"); !errors.Is(err, vsphere.ErrVMNotFound) {
			t.Fatalf("VM small: %v, want none", err)
		}
	})
	t.Run("thick disks beyond the datastore", func(t *testing.T) {
		ctx := context.Background()
		r, err := blockmap.Open(ctx, repo, blockmap.Options{})
		if err != nil {
			t.Fatal(err)
		}
		p, err := r.ResolvePoint(ctx, "efivm", "1")
		if err != nil {
			t.Fatal(err)
		}
		cfg := vmConfigOf(t, r, p)
		r.Close()
		cfg.Disks[0].Capacity = 1 << 50 // 1 PiB: more than any test machine has free
		data, _ := json.Marshal(cfg)
		file := filepath.Join(t.TempDir(), "huge.json")
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		res := runCairn(t, env, append([]string{"--repo", repo, "restore", "vm", "--vm", "efivm", "--point", "1", "--name", "thick",
			"--vm-config", file, "--disk-provisioning", "thick", "--nbd-command", restoreNBDCommand}, conn...)...)
		if res.code == 0 || !strings.Contains(res.stderr, "not enough space") || !strings.Contains(res.stderr, "--disk-provisioning thin") {
			t.Fatalf("thick restore beyond the datastore: exit %d: %s", res.code, res.stderr)
		}
		if strings.Contains(res.stderr, "trying the next") {
			t.Errorf("a full datastore sent the restore on to the next transport: %s", res.stderr)
		}
		if _, err := connectSim(t, sim).LookupVM(ctx, "thick"); !errors.Is(err, vsphere.ErrVMNotFound) {
			t.Fatalf("VM thick: %v, want none", err)
		}
	})
}
