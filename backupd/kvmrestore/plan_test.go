package kvmrestore

import (
	"encoding/xml"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd/vmconfig"
	"github.com/cairnbackup/cairn/internal/testutil"
)

func mustConfig(t *testing.T, js string) *vmconfig.Config {
	t.Helper()
	cfg, err := vmconfig.Parse([]byte(js))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

const (
	linuxPVSCSI = `{"version":1,"name":"web01","guest_id":"debian12_64Guest","firmware":"bios","cpus":4,"cores_per_socket":2,"memory_mb":2048,
	"bios_uuid":"421c3a5e-1111-2222-3333-444455556666",
	"controllers":[{"key":1000,"type":"pvscsi","bus":0},{"key":1001,"type":"lsilogic","bus":1},{"key":200,"type":"ide","bus":0}],
	"disks":[{"name":"scsi1-0","key":2001,"controller_key":1001,"bus":1,"unit":0,"capacity":1048576,"provisioning":"thin"},
	         {"name":"scsi0-0","key":2000,"controller_key":1000,"bus":0,"unit":0,"capacity":1048576,"provisioning":"thin"},
	         {"name":"scsi0-1","key":2002,"controller_key":1000,"bus":0,"unit":1,"capacity":1048576,"provisioning":"thin","not_backed_up":"independent"}],
	"nics":[{"key":4000,"label":"Network adapter 1","adapter_type":"vmxnet3","mac":"00:50:56:AA:BB:01","network":"VM Network","start_connected":true},
	        {"key":4001,"label":"Network adapter 2","adapter_type":"e1000","mac":"00:50:56:aa:bb:02","network":"Backup LAN","start_connected":false}],
	"cdroms":[{"key":3000,"controller_key":200,"controller_type":"ide","bus":0,"unit":0,"backing":"iso","iso":"[ds1] iso/debian.iso","start_connected":true}],
	"extra_config":{"vtpm.present":"TRUE","pciPassthru0.present":"TRUE","disk.EnableUUID":"TRUE"}}`
	windowsEFI = `{"version":1,"name":"dc01","guest_id":"windows2019srv_64Guest","firmware":"efi","secure_boot":true,"cpus":2,"memory_mb":4096,
	"controllers":[{"key":15000,"type":"ahci","bus":0},{"key":31000,"type":"nvme","bus":0}],
	"disks":[{"name":"sata0-0","key":16000,"controller_key":15000,"bus":0,"unit":0,"capacity":1048576,"provisioning":"thin"},
	         {"name":"nvme0-0","key":32000,"controller_key":31000,"bus":0,"unit":0,"capacity":1048576,"provisioning":"thick"}],
	"nics":[{"key":4000,"adapter_type":"e1000e","mac":"00:50:56:aa:bb:03","network":"VM Network","start_connected":true}]}`
	otherMixed = `{"version":1,"name":"appliance","guest_id":"otherGuest64","firmware":"efi","cpus":1,"memory_mb":512,
	"controllers":[{"key":1000,"type":"lsilogic-sas","bus":0},{"key":1001,"type":"pvscsi","bus":1},{"key":31000,"type":"nvme","bus":0},{"key":200,"type":"ide","bus":0},{"key":15000,"type":"ahci","bus":0}],
	"disks":[{"name":"scsi0-0","key":2000,"controller_key":1000,"bus":0,"unit":0,"capacity":1048576,"provisioning":"thin"},
	         {"name":"scsi1-3","key":2001,"controller_key":1001,"bus":1,"unit":3,"capacity":1048576,"provisioning":"thin"},
	         {"name":"nvme0-0","key":32000,"controller_key":31000,"bus":0,"unit":0,"capacity":1048576,"provisioning":"thin"},
	         {"name":"ide0-1","key":3001,"controller_key":200,"bus":0,"unit":1,"capacity":1048576,"provisioning":"thin"},
	         {"name":"sata0-2","key":16002,"controller_key":15000,"bus":0,"unit":2,"capacity":1048576,"provisioning":"thin"}],
	"nics":[{"key":4000,"adapter_type":"vmxnet3","mac":"00:50:56:aa:bb:04","network":"DMZ","start_connected":true},
	        {"key":4001,"adapter_type":"e1000","network":"VM Network","start_connected":true},
	        {"key":4002,"adapter_type":"sriov","network":"VM Network","start_connected":true}],
	"cdroms":[{"key":3000,"controller_key":15000,"controller_type":"ahci","bus":0,"unit":5,"backing":"none"}]}`
)

// TestPlanXML makes domains of several configurations and has libvirt's
// own schema (virt-xml-validate) judge each, then checks what each must
// say: buses by guest OS, boot order, firmware, NICs and their MACs,
// what is not carried over.
func TestPlanXML(t *testing.T) {
	testutil.RequireTools(t, "virt-xml-validate", "xmllint")
	vmNet := map[string]NetworkTarget{"VM Network": {Kind: NetKindNetwork, Name: "default"}}
	cases := []struct {
		name   string
		cfg    string
		disks  []string
		vmx    string
		spec   Spec
		want   []string // substrings of the XML
		absent []string
		notes  []string // substrings of NotCarried
	}{
		{name: "linux-bios-pvscsi-lsilogic", cfg: linuxPVSCSI, disks: []string{"scsi1-0", "scsi0-0"},
			spec: Spec{Networks: map[string]NetworkTarget{"VM Network": {Kind: NetKindNetwork, Name: "default"}, "Backup LAN": {Kind: NetKindBridge, Name: "br0"}}},
			want: []string{`<domain type="qemu">`, `<name>web01</name>`, `<uuid>421c3a5e-1111-2222-3333-444455556666</uuid>`, `machine="q35"`,
				`<vcpu>4</vcpu>`, `sockets="2"`, `cores="2"`, `<memory unit="MiB">2048</memory>`, `model="virtio-scsi"`,
				`web01-scsi0-0.qcow2"></source>`, `<target dev="sda" bus="scsi"></target>`, `<boot order="1"></boot>`,
				`<mac address="00:50:56:aa:bb:01"></mac>`, `<model type="virtio"></model>`, `<source network="default"></source>`,
				`<source bridge="br0"></source>`, `<link state="down"></link>`, `device="cdrom"`, `<graphics type="vnc" port="-1" autoport="yes" listen="127.0.0.1">`,
				`<serial type="pty">`, `<clock offset="utc">`},
			absent: []string{"<loader", "hyperv", "scsi0-1"},
			notes:  []string{"disk scsi0-1", "independent", "vTPM", "pciPassthru0", "[ds1] iso/debian.iso"}},
		{name: "windows-efi-secureboot-sata-nvme", cfg: windowsEFI, disks: []string{"sata0-0", "nvme0-0"}, spec: Spec{Networks: vmNet, DomainType: DomainKVM},
			want: []string{`<domain type="kvm">`, `<cpu mode="host-passthrough">`, `secure="yes"`, `OVMF_CODE_4M.secboot.fd`, `template="/usr/share/OVMF/OVMF_VARS_4M.ms.fd"`,
				`dc01_VARS.fd</nvram>`, `<smm state="on">`, `<target dev="sda" bus="sata"></target>`, `<target dev="sdb" bus="sata"></target>`,
				`<model type="e1000e"></model>`, `<hyperv mode="custom">`, `<clock offset="localtime">`},
			absent: []string{"virtio"},
			notes:  []string{"VMware NVRAM"}},
		{name: "windows-bus-virtio-new-identity-serial-file", cfg: windowsEFI, disks: []string{"sata0-0", "nvme0-0"},
			spec: Spec{Networks: vmNet, Bus: BusVirtio, NewIdentity: true, SerialLog: "/var/log/x.log", Format: FormatRaw},
			want: []string{`<target dev="vda" bus="virtio"></target>`, `<target dev="vdb" bus="virtio"></target>`, `type="raw"`, `dc01-sata0-0.raw`,
				`<serial type="file">`, `<source path="/var/log/x.log"></source>`},
			absent: []string{"<mac", "<uuid>"}},
		{name: "other-efi-mixed-controllers", cfg: otherMixed, disks: []string{"scsi0-0", "scsi1-3", "nvme0-0", "ide0-1", "sata0-2"},
			spec: Spec{Networks: map[string]NetworkTarget{"DMZ": {Kind: NetKindUser}, "VM Network": {Kind: NetKindNone}}},
			vmx:  "vmci0.present = \"TRUE\"\nfloppy0.present = \"FALSE\"\nserial0.present = \"TRUE\"\n",
			want: []string{`model="lsilogic"`, `model="vmpvscsi"`, `<interface type="user">`, `<model type="vmxnet3"></model>`, `OVMF_CODE_4M.fd`,
				`<target dev="sda" bus="sata"></target>`, `<target dev="sdb" bus="scsi"></target>`, `<boot order="5"></boot>`},
			absent: []string{`secure="yes"`, "floppy"},
			notes:  []string{"VMCI", "serial0", "left out (mapped to none)"}},
		{name: "linux-bus-sata-network-default", cfg: linuxPVSCSI, disks: []string{"scsi0-0", "scsi1-0"},
			spec:   Spec{Bus: BusSATA, NetworkDefault: &NetworkTarget{Kind: NetKindNetwork, Name: "isolated"}},
			want:   []string{`<target dev="sda" bus="sata"></target>`, `<source network="isolated"></source>`},
			absent: []string{"virtio-scsi"}},
	}
	dir := t.TempDir()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := c.spec
			spec.Dir = "/var/lib/libvirt/images"
			if spec.DomainType == "" {
				spec.DomainType = DomainQEMU
			}
			p, err := MakePlan(mustConfig(t, c.cfg), c.disks, []byte(c.vmx), spec, "vm", "2026-12-06T00-00-00Z")
			if err != nil {
				t.Fatal(err)
			}
			x, err := p.XML()
			if err != nil {
				t.Fatal(err)
			}
			f := filepath.Join(dir, c.name+".xml")
			if err := os.WriteFile(f, x, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("virt-xml-validate", f, "domain").CombinedOutput(); err != nil {
				t.Fatalf("virt-xml-validate: %v\n%s\n%s", err, out, x)
			}
			s := string(x)
			for _, w := range c.want {
				if !strings.Contains(s, w) {
					t.Errorf("XML lacks %s\n%s", w, s)
				}
			}
			for _, a := range c.absent {
				if strings.Contains(s, a) {
					t.Errorf("XML has %s\n%s", a, s)
				}
			}
			nc := strings.Join(p.NotCarried, "\n")
			for _, n := range c.notes {
				if !strings.Contains(nc, n) {
					t.Errorf("not carried over lacks %q:\n%s", n, nc)
				}
			}
			// boot order: the configuration's controller then unit, as a boot check's
			var d domainXML
			if err := xml.Unmarshal(x, &d); err != nil {
				t.Fatal(err)
			}
			for i, pd := range p.Disks {
				if pd.BootOrder != i+1 {
					t.Errorf("disk %s: boot order %d at %d", pd.Name, pd.BootOrder, i)
				}
			}
		})
	}
	// the Linux VM's first disk is scsi0-0 (controller 1000 unit 0), though the point lists scsi1-0 first
	p, err := MakePlan(mustConfig(t, linuxPVSCSI), []string{"scsi1-0", "scsi0-0"}, nil, Spec{Dir: dir, Networks: vmNet, NetworkDefault: &NetworkTarget{Kind: NetKindUser}, DomainType: DomainQEMU}, "vm", "p")
	if err != nil {
		t.Fatal(err)
	}
	if p.Disks[0].Name != "scsi0-0" || p.Disks[0].Dev != "sda" {
		t.Errorf("first disk %+v, want scsi0-0 as sda", p.Disks[0])
	}
}

// TestPlanRefusals: a NIC whose network has no target is refused with
// the list of such networks; bad options name themselves.
func TestPlanRefusals(t *testing.T) {
	cfg := mustConfig(t, otherMixed)
	_, err := MakePlan(cfg, []string{"scsi0-0"}, nil, Spec{Dir: "/x", DomainType: DomainQEMU}, "vm", "p")
	var ue *UnmappedError
	if !errors.As(err, &ue) || strings.Join(ue.Networks, ",") != "DMZ,VM Network" {
		t.Errorf("unmapped networks: %v", err)
	}
	for _, c := range []struct {
		spec Spec
		want string
	}{
		{Spec{Format: "vmdk"}, `format "vmdk"`},
		{Spec{Bus: "ide"}, `bus "ide"`},
		{Spec{DomainType: "xen"}, `domain type "xen"`},
		{Spec{Name: "a/b"}, `domain name "a/b"`},
	} {
		c.spec.NetworkDefault = &NetworkTarget{Kind: NetKindUser}
		if c.spec.DomainType == "" {
			c.spec.DomainType = DomainQEMU
		}
		_, err := MakePlan(cfg, []string{"scsi0-0"}, nil, c.spec, "vm", "p")
		if !errors.Is(err, ErrBadSpec) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %s", c.spec, err, c.want)
		}
	}
	for _, c := range []struct {
		in   string
		want NetworkTarget
		bad  bool
	}{
		{"default", NetworkTarget{Kind: NetKindNetwork, Name: "default"}, false},
		{"network:lan", NetworkTarget{Kind: NetKindNetwork, Name: "lan"}, false},
		{"bridge:br0", NetworkTarget{Kind: NetKindBridge, Name: "br0"}, false},
		{"user", NetworkTarget{Kind: NetKindUser}, false},
		{"none", NetworkTarget{Kind: NetKindNone}, false},
		{"bridge:", NetworkTarget{}, true},
		{"", NetworkTarget{}, true},
		{"foo:bar", NetworkTarget{}, true},
	} {
		got, err := ParseNetworkTarget(c.in)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("ParseNetworkTarget(%q) = %+v, %v", c.in, got, err)
		}
	}
	for _, c := range []struct{ id, want string }{
		{"debian12_64Guest", OSLinux}, {"rhel9_64Guest", OSLinux}, {"otherLinux64Guest", OSLinux}, {"windows2019srv_64Guest", OSWindows},
		{"windows9_64Guest", OSWindows}, {"freebsd13_64Guest", OSOther}, {"otherGuest64", OSOther}, {"", OSOther},
	} {
		if got := GuestOS(&vmconfig.Config{GuestID: c.id}); got != c.want {
			t.Errorf("GuestOS(%s) = %s, want %s", c.id, got, c.want)
		}
	}
}
