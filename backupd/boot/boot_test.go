package boot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/png"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd/vmconfig"
)

func TestPPMToPNG(t *testing.T) {
	var ppm bytes.Buffer
	fmt.Fprintf(&ppm, "P6\n# comment\n3 2\n255\n")
	pix := []byte{255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30, 40, 50, 60, 70, 80, 90}
	ppm.Write(pix)
	var out bytes.Buffer
	img, err := PPMToPNG(&ppm, &out)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := png.Decode(&out)
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if r, g, b, _ := dec.At(1, 0).RGBA(); r != 0 || g != 0xffff || b != 0 {
		t.Fatalf("pixel (1,0) = %d %d %d", r, g, b)
	}
	if r, _, _, _ := dec.At(2, 1).RGBA(); r>>8 != 70 {
		t.Fatalf("pixel (2,1) red %d", r>>8)
	}
	if st := statsOf(img); st.Blank || st.Blue {
		t.Fatalf("stats of a coloured picture: %+v", st)
	}
	for _, bad := range []string{"P5\n1 1\n255\n\x00", "P6\n1 1\n65535\n\x00\x00", "P6\n2 2\n255\n\x00\x00\x00"} {
		if _, err := ReadPPM(strings.NewReader(bad)); err == nil {
			t.Errorf("ReadPPM(%q) accepted", bad)
		}
	}
	// a blank and a blue screen
	var black, blue bytes.Buffer
	fmt.Fprintf(&black, "P6 4 4 255\n")
	black.Write(make([]byte, 48))
	fmt.Fprintf(&blue, "P6 4 4 255\n")
	blue.Write(bytes.Repeat([]byte{0x00, 0x78, 0xD7}, 16))
	bi, _ := ReadPPM(&black)
	ui, _ := ReadPPM(&blue)
	if st := statsOf(bi); !st.Blank || st.Blue {
		t.Errorf("black screen: %+v", st)
	}
	if st := statsOf(ui); !st.Blue {
		t.Errorf("blue screen: %+v", st)
	}
}

func testConfig() *vmconfig.Config {
	return &vmconfig.Config{
		Version: 1, Name: "vm", Firmware: vmconfig.FirmwareEFI, CPUs: 64, MemoryMB: 1 << 30,
		Controllers: []vmconfig.Controller{
			{Key: 1000, Type: vmconfig.ControllerPVSCSI}, {Key: 1001, Type: vmconfig.ControllerLSILogicSAS, Bus: 1},
			{Key: 15000, Type: vmconfig.ControllerAHCI}, {Key: 31000, Type: vmconfig.ControllerNVMe},
		},
		Disks: []vmconfig.Disk{
			{Name: "scsi0-0", ControllerKey: 1000, Unit: 0, Capacity: 1, Provisioning: "thin"},
			{Name: "scsi1-9", ControllerKey: 1001, Unit: 9, Capacity: 1, Provisioning: "thin"},
			{Name: "sata0-1", ControllerKey: 15000, Unit: 1, Capacity: 1, Provisioning: "thick"},
			{Name: "nvme0-0", ControllerKey: 31000, Unit: 0, Capacity: 1, Provisioning: "eager"},
		},
		NICs: []vmconfig.NIC{{AdapterType: "vmxnet3", MAC: "00:50:56:01:02:03"}, {AdapterType: "e1000e"}},
	}
}

// TestPlan: the qemu command follows the configuration (controllers,
// units, boot order, NICs, firmware) and caps CPUs and memory.
func TestPlan(t *testing.T) {
	cfg := testConfig()
	m := &Machine{opts: Options{Config: cfg, Network: NetworkIsolated, MaxCPUs: 2, MaxMemoryMB: 2048, Accel: "tcg",
		Disks: []Disk{{Name: "nvme0-0"}, {Name: "sata0-1"}, {Name: "scsi1-9"}, {Name: "scsi0-0"}, {Name: "extra"}}}, RunDir: t.TempDir()}
	args, err := m.plan()
	if err != nil {
		t.Fatal(err)
	}
	cmd := strings.Join(args, " ")
	for _, want := range []string{
		"-device pvscsi,id=ctrl0", "scsi-hd,drive=disk0,bus=ctrl0.0,scsi-id=0,bootindex=0",
		"-device lsi53c895a,id=ctrl1", "scsi-hd,drive=disk1,bus=ctrl1.0,scsi-id=0,bootindex=1",
		"-device ahci,id=ctrl2", "ide-hd,drive=disk2,bus=ctrl2.1,bootindex=2",
		"nvme,drive=disk3,serial=cairn3,bootindex=3", "disk4",
		"vmxnet3,netdev=net0,mac=00:50:56:01:02:03", "e1000e,netdev=net1", "restrict=on",
		"-smp 2", "-m 2048", "OVMF_CODE_4M.fd", "-accel tcg",
	} {
		if !strings.Contains(cmd, want) {
			t.Errorf("qemu command lacks %q:\n%s", want, cmd)
		}
	}
	if len(m.Notes) < 3 {
		t.Errorf("caps and renumbering not said: %v", m.Notes)
	}
	// BIOS, no NICs with --network none
	cfg.Firmware = vmconfig.FirmwareBIOS
	m = &Machine{opts: Options{Config: cfg, Network: NetworkNone, Accel: "tcg", Disks: []Disk{{Name: "scsi0-0"}}}, RunDir: t.TempDir()}
	args, err = m.plan()
	if err != nil {
		t.Fatal(err)
	}
	cmd = strings.Join(args, " ")
	if strings.Contains(cmd, "netdev") || strings.Contains(cmd, "pflash") || !strings.Contains(cmd, "sercon-port") {
		t.Errorf("BIOS without network: %s", cmd)
	}
}

// TestBadInput: no configuration and no firmware, qemu missing.
func TestBadInput(t *testing.T) {
	ctx := context.Background()
	_, err := Start(ctx, Options{Disks: []Disk{{Name: "d", Backing: "/dev/null"}}, RunDir: t.TempDir()})
	if !errors.Is(err, ErrNoConfig) || !strings.Contains(err.Error(), "firmware") {
		t.Errorf("no config: %v", err)
	}
	_, err = Start(ctx, Options{QEMU: "/nonexistent/qemu-system-x86_64", Firmware: "bios", Disks: []Disk{{Name: "d", Backing: "/dev/null"}}, RunDir: t.TempDir()})
	if !errors.Is(err, ErrQEMUMissing) || !strings.Contains(err.Error(), "qemu-system-x86") {
		t.Errorf("qemu missing: %v", err)
	}
	_, err = Start(ctx, Options{Firmware: "bios", Network: "bridge", Disks: []Disk{{Name: "d", Backing: "/dev/null"}}, RunDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "network") {
		t.Errorf("bad network: %v", err)
	}
}
