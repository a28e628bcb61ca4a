package test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/vmconfig"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestVMConfigInPoint backs up a BIOS VM (LSI Logic and AHCI, thin and
// thick disks, an e1000 NIC, a CD-ROM, secrets in extraConfig) and an EFI
// VM with secure boot (pvscsi and NVMe, eagerly zeroed disk, two vmxnet3
// NICs), and checks that each point carries the VM's configuration, .vmx
// and .nvram, in the mount exactly as the simulator holds them.
func TestVMConfigInPoint(t *testing.T) {
	testutil.RequireFUSE(t)
	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{
		{
			Name: "biosvm", SCSIController: "lsilogic", NumCPUs: 2, CoresPerSocket: 1, MemoryMB: 1024,
			GuestID: "debian12_64Guest", CDROM: true, Annotation: "web server\nowner: ops",
			NICs:        []esxsim.NICSpec{{Type: "e1000"}},
			ExtraConfig: map[string]string{"disk.EnableUUID": "TRUE", "guestinfo.userdata": "I2Nsb3VkLWNvbmZpZw==", "answer.msg.password": "hunter2"},
			Disks: []esxsim.DiskSpec{
				{Size: 8 << 20}, {Size: 4 << 20, Provisioning: "thick"}, {Size: 4 << 20, Controller: esxsim.ControllerSATA},
			},
		},
		{
			Name: "efivm", Firmware: "efi", SecureBoot: true, NumCPUs: 4, CoresPerSocket: 2, MemoryMB: 2048,
			NICs: []esxsim.NICSpec{{}, {Network: "VM Network"}},
			Disks: []esxsim.DiskSpec{
				{Size: 8 << 20}, {Size: 4 << 20, Controller: esxsim.ControllerNVMe, Provisioning: "eager"},
			},
		},
	}})
	conn := connectSim(t, sim)
	ctx := context.Background()
	repo := newMountRepo(t, ctx)
	for _, vm := range []string{"biosvm", "efivm"} {
		if _, err := backupd.BackupVM(ctx, repo, conn, vm, backupd.JobOptions{Transports: []string{"file"}}); err != nil {
			t.Fatalf("backup %s: %v", vm, err)
		}
	}
	_, mnt := mountRepo(t, ctx, repo)

	type want struct {
		firmware     string
		secure       bool
		cpus, cores  int
		mem          int64
		ctrls        []string
		disks        map[string]string // cairn name -> provisioning
		nics         []string
		cdroms       int
		extraKept    []string
		extraDropped []string
	}
	wants := map[string]want{
		"biosvm": {vmconfig.FirmwareBIOS, false, 2, 1, 1024, []string{"ide", "ide", "lsilogic", "ahci"},
			map[string]string{"scsi0-0": "thin", "scsi0-1": "thick", "sata0-0": "thin"}, []string{"e1000"}, 1,
			[]string{"disk.EnableUUID"}, []string{"answer.msg.password", "guestinfo.userdata"}},
		"efivm": {vmconfig.FirmwareEFI, true, 4, 2, 2048, []string{"ide", "ide", "pvscsi", "nvme"},
			map[string]string{"scsi0-0": "thin", "nvme0-0": "eager"}, []string{"vmxnet3", "vmxnet3"}, 0, nil, nil},
	}
	for vm, w := range wants {
		pdir := filepath.Join(mnt, vm, "latest")
		data, err := os.ReadFile(filepath.Join(pdir, "vm", "config.json"))
		if err != nil {
			t.Fatalf("%s: %v", vm, err)
		}
		cfg, err := vmconfig.Parse(data)
		if err != nil {
			t.Fatalf("%s: config.json does not parse: %v\n%s", vm, err, data)
		}
		if cfg.Name != vm || cfg.Firmware != w.firmware || cfg.SecureBoot != w.secure || cfg.CPUs != w.cpus ||
			cfg.CoresPerSocket != w.cores || cfg.MemoryMB != w.mem || cfg.BIOSUUID == "" || cfg.InstanceUUID == "" || cfg.HardwareVersion != "vmx-19" {
			t.Errorf("%s: identity/firmware/cpu/memory: %+v", vm, cfg)
		}
		var ctrls []string
		for _, c := range cfg.Controllers {
			ctrls = append(ctrls, c.Type)
		}
		if !slices.Equal(ctrls, w.ctrls) {
			t.Errorf("%s: controllers %v, want %v", vm, ctrls, w.ctrls)
		}
		pts, err := repo.Points(ctx, vm)
		if err != nil {
			t.Fatal(err)
		}
		p := pts[len(pts)-1]
		if len(cfg.Disks) != len(w.disks) || len(p.Disks) != len(w.disks) {
			t.Errorf("%s: %d disks in the config, %d in the point, want %d", vm, len(cfg.Disks), len(p.Disks), len(w.disks))
		}
		for _, d := range cfg.Disks {
			info, ok := p.Disk(d.Name)
			if !ok || w.disks[d.Name] != d.Provisioning || info.Size != d.Capacity {
				t.Errorf("%s: disk %+v (in point: %v, size %d), want provisioning %q", vm, d, ok, info.Size, w.disks[d.Name])
			}
			if ct, _ := cfg.Controller(d.ControllerKey); ct.Type != d.ControllerType {
				t.Errorf("%s: disk %s controller %q vs %q", vm, d.Name, d.ControllerType, ct.Type)
			}
		}
		var nics []string
		for _, n := range cfg.NICs {
			nics = append(nics, n.AdapterType)
			if n.MAC == "" || n.Network != "VM Network" {
				t.Errorf("%s: nic %+v", vm, n)
			}
		}
		if !slices.Equal(nics, w.nics) || len(cfg.CDROMs) != w.cdroms {
			t.Errorf("%s: nics %v cdroms %d", vm, nics, len(cfg.CDROMs))
		}
		for _, k := range w.extraKept {
			if _, ok := cfg.ExtraConfig[k]; !ok {
				t.Errorf("%s: extraConfig %s missing", vm, k)
			}
		}
		if !slices.Equal(cfg.DroppedExtraConfig, w.extraDropped) {
			t.Errorf("%s: dropped %v, want %v", vm, cfg.DroppedExtraConfig, w.extraDropped)
		}
		if bytes.Contains(data, []byte("hunter2")) || bytes.Contains(data, []byte("I2Nsb3Vk")) {
			t.Errorf("%s: a secret is in config.json", vm)
		}
		if vm == "biosvm" && cfg.Annotation != "web server\nowner: ops" {
			t.Errorf("annotation %q", cfg.Annotation)
		}

		// the .vmx and .nvram are the simulator's files (secrets removed from the .vmx)
		simVMX, err := sim.VMXPath(vm)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []struct{ local, name string }{
			{simVMX, vm + ".vmx"}, {simVMX[:len(simVMX)-4] + ".nvram", vm + ".nvram"},
		} {
			wantData, err := os.ReadFile(f.local)
			if err != nil {
				t.Fatal(err)
			}
			if filepath.Ext(f.name) == ".vmx" {
				if !bytes.Contains(wantData, []byte("firmware")) && w.firmware == "efi" {
					t.Errorf("%s: the simulator's .vmx names no firmware:\n%s", vm, wantData)
				}
				wantData, _ = vmconfig.FilterVMX(wantData)
			}
			got, err := os.ReadFile(filepath.Join(pdir, "vm", f.name))
			if err != nil {
				t.Fatalf("%s: %v", vm, err)
			}
			if len(wantData) < 100 || !bytes.Equal(got, wantData) {
				t.Errorf("%s: vm/%s differs from the datastore's file (%d vs %d bytes)", vm, f.name, len(got), len(wantData))
			}
			if bytes.Contains(got, []byte("hunter2")) {
				t.Errorf("%s: a secret is in vm/%s", vm, f.name)
			}
		}
		var info struct {
			VMConfig    string `json:"vm_config"`
			Attachments []struct {
				Name string `json:"name"`
			} `json:"attachments"`
		}
		ij, err := os.ReadFile(filepath.Join(pdir, "info.json"))
		if err != nil || json.Unmarshal(ij, &info) != nil || info.VMConfig != "vm/config.json" || len(info.Attachments) != 3 {
			t.Errorf("%s: info.json: %+v %v", vm, info, err)
		}
		ents, err := os.ReadDir(filepath.Join(pdir, "vm"))
		if err != nil || len(ents) != 3 {
			t.Errorf("%s: vm/ lists %v, %v", vm, ents, err)
		}
	}
}
