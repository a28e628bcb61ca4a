package test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/internal/guestimg"
	"github.com/cairnbackup/cairn/internal/libvirttest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

const (
	// a Linux guest on pvscsi with BIOS: virtio-scsi disks, a virtio NIC
	kvmBIOSConfig = `{"version":1,"name":"kbios","guest_id":"debian12_64Guest","firmware":"bios","cpus":1,"memory_mb":256,
	"controllers":[{"key":1000,"type":"pvscsi","bus":0}],
	"disks":[{"name":"scsi0-0","key":2000,"controller_key":1000,"bus":0,"unit":0,"capacity":67108864,"provisioning":"thin"}],
	"nics":[{"key":4000,"adapter_type":"vmxnet3","mac":"00:50:56:aa:bb:01","network":"VM Network","start_connected":true}]}`
	// a "Windows" guest (the guest id decides) on SATA with UEFI: SATA disks, an e1000e NIC
	kvmEFIConfig = `{"version":1,"name":"kefi","guest_id":"windows2019srv_64Guest","firmware":"efi","cpus":1,"memory_mb":1024,
	"controllers":[{"key":15000,"type":"ahci","bus":0}],
	"disks":[{"name":"sata0-0","key":16000,"controller_key":15000,"bus":0,"unit":0,"capacity":67108864,"provisioning":"thin"}],
	"nics":[{"key":4000,"adapter_type":"e1000e","mac":"00:50:56:aa:bb:02","network":"Prod","start_connected":true}]}`
)

type kvmRestoreJSON struct {
	Name       string   `json:"name"`
	XML        string   `json:"xml"`
	Firmware   string   `json:"firmware"`
	GuestOS    string   `json:"guest_os"`
	SerialLog  string   `json:"serial_log"`
	NotCarried []string `json:"not_carried_over"`
	Disks      []struct {
		Name, File, Bus, Dev string
	} `json:"disks"`
	NICs []struct {
		MAC   string `json:"mac"`
		Model string `json:"model"`
	} `json:"nics"`
	Defined  bool   `json:"defined"`
	Started  bool   `json:"started"`
	NextStep string `json:"next_step"`
}

// TestRestoreKVM restores points to a private libvirtd and boots them
// under TCG: the older of two points of a BIOS Linux guest (its marker,
// not the newer point's, appears on the serial console) and a UEFI guest
// recorded as Windows (SATA, e1000e, OVMF with its own variables). It
// checks the written disk against cairn export (qemu-img compare) and the
// refusals: an unmapped network, an existing file, a point without
// configuration, a domain name libvirt has.
func TestRestoreKVM(t *testing.T) {
	testutil.RequireTools(t, append([]string{"qemu-system-x86_64", "qemu-img"}, guestimg.Tools...)...)
	d := libvirttest.Start(t)
	bios1 := guestImage(t, guestimg.KindBIOS, "gen1")
	bios2 := guestImage(t, guestimg.KindBIOS, "gen2")
	efi := guestImage(t, guestimg.KindEFI, "efi")

	work := t.TempDir()
	libvirttest.Reachable(t, work)
	repoDir := filepath.Join(work, "repo")
	mustCairn(t, "--repo", repoDir, "init")
	cfgFile := func(name, js string) string {
		f := filepath.Join(work, name+".json")
		if err := os.WriteFile(f, []byte(js), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	importPoint := func(vm, disk, cfg, img string) string {
		args := []string{"--repo", repoDir, "import", "--vm", vm, "--disk", disk}
		if cfg != "" {
			args = append(args, "--vm-config", cfg)
		}
		return strings.TrimSpace(mustCairn(t, append(args, img)...))
	}
	p1 := importPoint("kbios", "scsi0-0", cfgFile("kbios", kvmBIOSConfig), bios1)
	time.Sleep(1100 * time.Millisecond) // point ids are seconds
	importPoint("kbios", "scsi0-0", cfgFile("kbios", kvmBIOSConfig), bios2)
	importPoint("kefi", "sata0-0", cfgFile("kefi", kvmEFIConfig), efi)
	importPoint("bare", "scsi0-0", "", bios1)

	restore := func(args ...string) cairnResult {
		return runCairn(t, nil, append([]string{"--repo", repoDir, "restore", "kvm", "--domain-type", "qemu", "--connect", d.URI}, args...)...)
	}

	// refusals, before anything is written
	out := filepath.Join(work, "refused")
	if r := restore("--vm", "kefi", "--dir", out); r.code == 0 || !strings.Contains(r.stderr, `"Prod"`) || !strings.Contains(r.stderr, "--network") {
		t.Errorf("unmapped network: exit %d: %s", r.code, r.stderr)
	}
	if r := restore("--vm", "bare", "--dir", out, "--network-default", "user"); r.code == 0 || !strings.Contains(r.stderr, "--vm-config") {
		t.Errorf("point without configuration: exit %d: %s", r.code, r.stderr)
	}
	if entries, _ := os.ReadDir(out); len(entries) > 0 {
		t.Errorf("a refused restore wrote %v", entries)
	}

	type boot struct {
		vm, point, marker  string
		args               []string
		firmware, bus, nic string
	}
	boots := []boot{
		{"kbios", p1, "CAIRN-GUEST-UP gen1", []string{"--network", "VM Network=user"}, "bios", "scsi", "virtio"},
		{"kefi", "latest", "CAIRN-GUEST-UP efi", []string{"--network", "Prod=user"}, "efi", "sata", "e1000e"},
	}
	var wg sync.WaitGroup
	for _, b := range boots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := libvirttest.Name("cairn-kvmtest-" + b.vm)
			d.Remove(t, name)
			dir := filepath.Join(work, name)
			serial := filepath.Join(work, name+".serial")
			r := restore(append([]string{"--vm", b.vm, "--point", b.point, "--dir", dir, "--name", name, "--serial-log", serial, "--start", "--json"}, b.args...)...)
			if r.code != 0 {
				ls, _ := exec.Command("sh", "-c", "ls -la "+dir+"; namei -l "+dir).CombinedOutput()
				t.Errorf("restore kvm %s: exit %d: %s %s\n%s", b.vm, r.code, r.stdout, r.stderr, ls)
				return
			}
			var res kvmRestoreJSON
			if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
				t.Errorf("%s: --json: %v\n%s", b.vm, err, r.stdout)
				return
			}
			if !res.Defined || !res.Started || res.Firmware != b.firmware || len(res.Disks) != 1 || res.Disks[0].Bus != b.bus ||
				len(res.NICs) != 1 || res.NICs[0].Model != b.nic || !strings.HasPrefix(res.NICs[0].MAC, "00:50:56:aa:bb:") {
				t.Errorf("%s: %+v", b.vm, res)
			}
			if b.firmware == "efi" && !strings.Contains(strings.Join(res.NotCarried, "\n"), "VMware NVRAM") {
				t.Errorf("%s: the VMware NVRAM is not said to be left behind: %v", b.vm, res.NotCarried)
			}
			if out, err := exec.Command("virt-xml-validate", res.XML, "domain").CombinedOutput(); err != nil {
				t.Errorf("%s: virt-xml-validate: %v %s", b.vm, err, out)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			log, err := libvirttest.WaitSerial(ctx, serial, b.marker)
			if err != nil {
				t.Errorf("%s: %v\n%s", b.vm, err, log)
				return
			}
			if b.vm == "kbios" && strings.Contains(log, "gen2") {
				t.Errorf("the restore of point %s booted the newer point:\n%s", p1, log)
			}
			t.Logf("%s: booted under libvirt (%s)", b.vm, b.marker)
			exec.Command("virsh", "-c", d.URI, "destroy", name).Run()
			if b.vm == "kbios" {
				// libvirt has that name now
				r := restore("--vm", b.vm, "--dir", filepath.Join(work, "again"), "--name", name, "--define", "--network-default", "user")
				if r.code == 0 || !strings.Contains(r.stderr, "undefine") {
					t.Errorf("restore to a defined name: exit %d: %s", r.code, r.stderr)
				}
			}
		}()
	}

	// the latest BIOS point as qcow2 equals cairn export of the disk; an
	// existing file is refused, naming it and --force
	dir := filepath.Join(work, "plain")
	r := restore("--vm", "kbios", "--dir", dir, "--network-default", "none", "--json")
	if r.code != 0 {
		t.Fatalf("restore kvm: exit %d: %s", r.code, r.stderr)
	}
	var res kvmRestoreJSON
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatal(err)
	}
	if res.Defined || !strings.Contains(res.NextStep, "virsh") || len(res.NICs) != 0 {
		t.Errorf("without --define: %+v", res)
	}
	exported := filepath.Join(work, "export.img")
	mustCairn(t, "--repo", repoDir, "export", "--vm", "kbios", "--disk", "scsi0-0", exported)
	if out, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "qcow2", exported, res.Disks[0].File).CombinedOutput(); err != nil {
		t.Errorf("restored disk differs from cairn export: %v %s", err, out)
	}
	if r := restore("--vm", "kbios", "--dir", dir, "--network-default", "none"); r.code == 0 || !strings.Contains(r.stderr, res.Disks[0].File) || !strings.Contains(r.stderr, "--force") {
		t.Errorf("existing file: exit %d: %s", r.code, r.stderr)
	}
	wg.Wait()
}
