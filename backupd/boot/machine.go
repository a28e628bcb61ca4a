package boot

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cairnbackup/cairn/backupd/vmconfig"
)

// Networks.
const (
	NetworkNone     = "none"
	NetworkIsolated = "isolated"
	NetworkUser     = "user"
)

// ErrQEMUMissing means qemu-system-x86_64 (or qemu-img, or the firmware)
// is not installed.
var ErrQEMUMissing = errors.New("qemu is not installed")

// ErrNoConfig means the point has no VM configuration and no firmware
// was given.
var ErrNoConfig = errors.New("the point has no VM configuration")

// Firmware files (Debian's ovmf package).
var (
	ovmfCode       = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars       = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	ovmfCodeSecure = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
	ovmfVarsSecure = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
)

// Disk is one guest disk.
type Disk struct {
	// Name is the cairn disk name ("scsi0-0"), matched with the
	// configuration's disks.
	Name string
	// Backing is what the overlay reads: a file path or an NBD URI.
	Backing string
}

// Options shape a Machine.
type Options struct {
	// Config is the point's VM configuration; nil needs Firmware.
	Config *vmconfig.Config
	// Firmware overrides the configuration's ("bios" or "efi").
	Firmware string
	Disks    []Disk
	// Network is NetworkNone, NetworkIsolated (default) or NetworkUser.
	Network string
	// VNC is a VNC display address ("127.0.0.1:5901" or ":1"); empty
	// means no display (headless; screenshots still work).
	VNC string
	// Serial is a file for the serial console; "-" is stdout; empty
	// writes it to serial.log in the run directory.
	Serial string
	// RunDir holds the overlays, QMP socket, firmware variables and the
	// serial log; it is made if missing and removed by Stop unless
	// KeepOverlays.
	RunDir       string
	KeepOverlays bool
	// QEMU is the qemu binary (default qemu-system-x86_64 in $PATH).
	QEMU string
	// MaxCPUs and MaxMemoryMB cap the machine (default: the host's CPUs,
	// and half of its available memory).
	MaxCPUs     int
	MaxMemoryMB int64
	// Accel forces "kvm" or "tcg" (default: detect).
	Accel string
	// Forwards are guest TCP ports reachable from the host: each gets a
	// forward from an ephemeral port on 127.0.0.1 through the first NIC
	// (Machine.Forwards says which); the network stays as isolated as
	// Network says. Starting refuses when there is no NIC (ErrNoNIC).
	Forwards []int
	Logger   *slog.Logger
}

// Machine is a running qemu.
type Machine struct {
	// Accel is "kvm" or "tcg"; Firmware "bios" or "efi"; CPUs and MemoryMB
	// what the machine got; Notes say what was changed and why.
	Accel    string
	Firmware string
	CPUs     int
	MemoryMB int64
	Notes    []string
	// SerialLog is the serial console's file ("" for stdout).
	SerialLog string
	RunDir    string
	Args      []string
	// Forwards maps each guest port of Options.Forwards to its port on
	// 127.0.0.1.
	Forwards map[int]int

	opts    Options
	cmd     *exec.Cmd
	qmp     *qmp
	exited  chan struct{}
	waitErr error
	stopMu  sync.Mutex
	stopped bool
	log     *slog.Logger
}

// CheckTools reports a clear error when qemu or its firmware is missing.
func CheckTools(qemu string, efi bool) error {
	if qemu == "" {
		qemu = "qemu-system-x86_64"
	}
	if _, err := exec.LookPath(qemu); err != nil {
		return fmt.Errorf("%s not found: %w: install the Debian package qemu-system-x86", qemu, ErrQEMUMissing)
	}
	if _, err := exec.LookPath("qemu-img"); err != nil {
		return fmt.Errorf("qemu-img not found: %w: install the Debian package qemu-utils", ErrQEMUMissing)
	}
	if efi {
		if _, err := os.Stat(ovmfCode); err != nil {
			return fmt.Errorf("UEFI firmware %s not found: %w: install the Debian package ovmf", ovmfCode, ErrQEMUMissing)
		}
	}
	return nil
}

// DetectAccel returns "kvm" when /dev/kvm opens and the CPU has
// hardware virtualization, else "tcg", with the reason.
func DetectAccel() (string, string) {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "tcg", "no usable /dev/kvm (" + err.Error() + "): software emulation (TCG), much slower"
	}
	f.Close()
	info, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(info), "\n") {
		if strings.HasPrefix(l, "flags") && (slices.Contains(strings.Fields(l), "vmx") || slices.Contains(strings.Fields(l), "svm")) {
			return "kvm", "KVM"
		}
	}
	return "tcg", "the CPU offers no hardware virtualization (vmx/svm): software emulation (TCG), much slower"
}

func hostMemoryMB() int64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 1024
	}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemAvailable:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb / 1024
		}
	}
	return 1024
}

// plan decides the machine's shape and qemu arguments.
func (m *Machine) plan() ([]string, error) {
	o := m.opts
	cfg := o.Config
	fw := o.Firmware
	if fw == "" {
		if cfg == nil {
			return nil, fmt.Errorf("%w: give a firmware (bios or efi)", ErrNoConfig)
		}
		fw = cfg.Firmware
	}
	if fw != vmconfig.FirmwareBIOS && fw != vmconfig.FirmwareEFI {
		return nil, fmt.Errorf("firmware %q: want bios or efi", fw)
	}
	m.Firmware = fw
	cpus, mem := 1, int64(1024)
	if cfg != nil {
		cpus, mem = cfg.CPUs, cfg.MemoryMB
	}
	maxCPU := o.MaxCPUs
	if maxCPU <= 0 {
		maxCPU = runtime.NumCPU()
	}
	maxMem := o.MaxMemoryMB
	if maxMem <= 0 {
		maxMem = max(256, hostMemoryMB()/2)
	}
	if cpus > maxCPU {
		m.Notes = append(m.Notes, fmt.Sprintf("CPUs capped from %d to %d (the host's)", cpus, maxCPU))
		cpus = maxCPU
	}
	if mem > maxMem {
		m.Notes = append(m.Notes, fmt.Sprintf("memory capped from %d MiB to %d MiB (half the host's available memory)", mem, maxMem))
		mem = maxMem
	}
	m.CPUs, m.MemoryMB = cpus, mem
	accel := o.Accel
	if accel == "" {
		var why string
		accel, why = DetectAccel()
		if accel == "tcg" {
			m.Notes = append(m.Notes, why)
		}
	}
	m.Accel = accel

	machine := "q35"
	secure := cfg != nil && cfg.SecureBoot && fw == vmconfig.FirmwareEFI
	if secure {
		machine += ",smm=on"
	}
	args := []string{"-name", "cairn-boot", "-machine", machine, "-accel", accel, "-m", strconv.FormatInt(mem, 10),
		"-smp", strconv.Itoa(cpus), "-nodefaults", "-no-user-config", "-vga", "std",
		"-qmp", "unix:" + filepath.Join(m.RunDir, "qmp.sock") + ",server=on,wait=off"}
	if accel == "kvm" {
		args = append(args, "-cpu", "host")
	}
	if cfg != nil && cfg.BIOSUUID != "" {
		args = append(args, "-uuid", cfg.BIOSUUID)
	}
	if o.VNC != "" {
		args = append(args, "-display", "vnc="+o.VNC)
	} else {
		args = append(args, "-display", "none")
	}
	switch o.Serial {
	case "-":
		args = append(args, "-serial", "stdio")
	default:
		m.SerialLog = o.Serial
		if m.SerialLog == "" {
			m.SerialLog = filepath.Join(m.RunDir, "serial.log")
		}
		args = append(args, "-serial", "file:"+m.SerialLog)
	}
	if fw == vmconfig.FirmwareEFI {
		code, vars := ovmfCode, ovmfVars
		if secure {
			code, vars = ovmfCodeSecure, ovmfVarsSecure
			args = append(args, "-global", "driver=cfi.pflash01,property=secure,value=on")
			m.Notes = append(m.Notes, "secure boot: OVMF with Microsoft keys enrolled")
		}
		v := filepath.Join(m.RunDir, "OVMF_VARS.fd")
		if err := copyFile(vars, v); err != nil {
			return nil, fmt.Errorf("UEFI variables: %w", err)
		}
		args = append(args, "-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+code,
			"-drive", "if=pflash,format=raw,unit=1,file="+v)
	} else {
		// SeaBIOS writes its messages ("No bootable device.") to the serial
		// port too: etc/sercon-port holds the port as a little-endian integer
		port := filepath.Join(m.RunDir, "sercon-port")
		if err := os.WriteFile(port, []byte{0xf8, 0x03}, 0o600); err != nil {
			return nil, err
		}
		args = append(args, "-fw_cfg", "name=etc/sercon-port,file="+port)
	}
	dargs, err := m.diskArgs()
	if err != nil {
		return nil, err
	}
	args = append(args, dargs...)
	if err := m.planForwards(); err != nil {
		return nil, err
	}
	args = append(args, m.nicArgs()...)
	return args, nil
}

// qemuController maps a vSphere controller type to a qemu device.
func qemuController(typ string) string {
	switch typ {
	case vmconfig.ControllerPVSCSI:
		return "pvscsi"
	case vmconfig.ControllerLSILogic, vmconfig.ControllerLSILogicSAS, vmconfig.ControllerBusLogic:
		return "lsi53c895a"
	case vmconfig.ControllerAHCI:
		return "ahci"
	case vmconfig.ControllerNVMe:
		return "nvme"
	}
	return "ide"
}

func (m *Machine) diskArgs() ([]string, error) {
	var args []string
	type slot struct {
		d    Disk
		conf vmconfig.Disk
		ok   bool
	}
	var slots []slot
	for _, d := range m.opts.Disks {
		s := slot{d: d}
		if m.opts.Config != nil {
			s.conf, s.ok = m.opts.Config.Disk(d.Name)
		}
		slots = append(slots, s)
	}
	// boot order: the configuration's controller and unit order (the first
	// disk is what vSphere boots), disks without configuration last
	slices.SortStableFunc(slots, func(a, b slot) int { return compareBoot(a.conf, a.ok, b.conf, b.ok) })
	ctrls := map[int32]string{}
	lsiUnits := map[int32]int{}
	for i, s := range slots {
		ov := filepath.Join(m.RunDir, fmt.Sprintf("%s.qcow2", s.d.Name))
		id := fmt.Sprintf("disk%d", i)
		args = append(args, "-blockdev", fmt.Sprintf("driver=qcow2,node-name=%s,file.driver=file,file.filename=%s,discard=unmap", id, ov))
		boot := fmt.Sprintf(",bootindex=%d", i)
		typ := "pvscsi"
		if s.ok {
			ct, _ := m.opts.Config.Controller(s.conf.ControllerKey)
			typ = qemuController(ct.Type)
		} else if m.opts.Config == nil {
			typ = "ahci"
		}
		key := s.conf.ControllerKey
		if !s.ok {
			key = -1 - int32(i)
		}
		switch typ {
		case "nvme":
			args = append(args, "-device", fmt.Sprintf("nvme,drive=%s,serial=cairn%d%s", id, i, boot))
			continue
		case "ide":
			// q35's ICH9 AHCI ports stand in for the IDE channels
			port := int(s.conf.Bus)*2 + int(s.conf.Unit)
			args = append(args, "-device", fmt.Sprintf("ide-hd,drive=%s,bus=ide.%d%s", id, port, boot))
			continue
		}
		cid, made := ctrls[key]
		if !made {
			cid = fmt.Sprintf("ctrl%d", len(ctrls))
			ctrls[key] = cid
			args = append(args, "-device", typ+",id="+cid)
		}
		unit := int(s.conf.Unit)
		if !s.ok {
			unit = 0
		}
		switch typ {
		case "ahci":
			args = append(args, "-device", fmt.Sprintf("ide-hd,drive=%s,bus=%s.%d%s", id, cid, unit, boot))
		case "lsi53c895a":
			if unit > 6 {
				unit = lsiUnits[key]
				m.Notes = append(m.Notes, fmt.Sprintf("disk %s: SCSI unit %d renumbered %d (lsi53c895a has 7 targets)", s.d.Name, s.conf.Unit, unit))
			}
			lsiUnits[key]++
			args = append(args, "-device", fmt.Sprintf("scsi-hd,drive=%s,bus=%s.0,scsi-id=%d%s", id, cid, unit, boot))
		default:
			args = append(args, "-device", fmt.Sprintf("scsi-hd,drive=%s,bus=%s.0,scsi-id=%d%s", id, cid, unit, boot))
		}
	}
	return args, nil
}

func (m *Machine) nicArgs() []string {
	net := m.opts.Network
	if net == "" {
		net = NetworkIsolated
	}
	if net == NetworkNone || m.opts.Config == nil {
		if m.opts.Config == nil && net != NetworkNone {
			return []string{"-netdev", netdev(net, 0) + m.hostfwd(), "-device", "e1000,netdev=net0,romfile="}
		}
		return nil
	}
	var args []string
	for i, n := range m.opts.Config.NICs {
		dev := QEMUNIC(n.AdapterType)
		mac := ""
		if n.MAC != "" {
			mac = ",mac=" + n.MAC
		}
		nd := netdev(net, i)
		if i == 0 {
			nd += m.hostfwd()
		}
		args = append(args, "-netdev", nd, "-device", fmt.Sprintf("%s,netdev=net%d%s,romfile=", dev, i, mac))
	}
	return args
}

func netdev(kind string, i int) string {
	if kind == NetworkUser {
		return fmt.Sprintf("user,id=net%d", i)
	}
	return fmt.Sprintf("user,id=net%d,restrict=on", i)
}

// Start plans the machine, creates the overlays and starts qemu. The
// machine ends when ctx ends, Stop is called, or the guest powers off.
func Start(ctx context.Context, opts Options) (*Machine, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.QEMU == "" {
		opts.QEMU = "qemu-system-x86_64"
	}
	if len(opts.Disks) == 0 {
		return nil, errors.New("boot: no disks")
	}
	switch opts.Network {
	case "", NetworkNone, NetworkIsolated, NetworkUser:
	default:
		return nil, fmt.Errorf("network %q: want none, isolated or user", opts.Network)
	}
	efi := opts.Firmware == vmconfig.FirmwareEFI || (opts.Firmware == "" && opts.Config != nil && opts.Config.Firmware == vmconfig.FirmwareEFI)
	if err := CheckTools(opts.QEMU, efi); err != nil {
		return nil, err
	}
	if opts.RunDir == "" {
		return nil, errors.New("boot: no run directory")
	}
	if err := os.MkdirAll(opts.RunDir, 0o700); err != nil {
		return nil, err
	}
	m := &Machine{opts: opts, RunDir: opts.RunDir, exited: make(chan struct{}), log: opts.Logger}
	ok := false
	defer func() {
		if !ok {
			m.cleanup()
		}
	}()
	args, err := m.plan()
	if err != nil {
		return nil, err
	}
	for _, d := range opts.Disks {
		ov := filepath.Join(m.RunDir, d.Name+".qcow2")
		out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", d.Backing, ov).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("overlay of disk %s: qemu-img create: %v: %s", d.Name, err, strings.TrimSpace(string(out)))
		}
		// the guest's writes: private, like the repository (qemu-img makes 0644)
		if err := os.Chmod(ov, 0o600); err != nil {
			return nil, fmt.Errorf("overlay of disk %s: %w", d.Name, err)
		}
	}
	m.Args = args
	cmd := exec.Command(opts.QEMU, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if opts.Serial == "-" {
		cmd.Stdout = os.Stdout
	}
	var stderr strings.Builder
	cmd.Stderr = &limitedWriter{w: &stderr, n: 8192}
	// Pdeathsig follows the thread that forked: keep it alive for qemu's life
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		m.waitErr = cmd.Wait()
		if m.waitErr != nil && stderr.Len() > 0 {
			m.waitErr = fmt.Errorf("%w: %s", m.waitErr, strings.TrimSpace(stderr.String()))
		}
		close(m.exited)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	m.cmd = cmd
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	q, err := dialQMP(qctx, filepath.Join(m.RunDir, "qmp.sock"), m.exited)
	if err != nil {
		_ = cmd.Process.Kill()
		<-m.exited
		if m.waitErr != nil {
			return nil, fmt.Errorf("qemu failed: %w", m.waitErr)
		}
		return nil, fmt.Errorf("qemu control socket: %w", err)
	}
	m.qmp = q
	if err := m.readForwards(qctx); err != nil {
		m.Stop()
		return nil, err
	}
	go func() {
		select {
		case <-ctx.Done():
			m.Stop()
		case <-m.exited:
		}
	}()
	ok = true
	return m, nil
}

// Exited is closed when qemu has exited.
func (m *Machine) Exited() <-chan struct{} { return m.exited }

// Err is qemu's exit error once Exited is closed.
func (m *Machine) Err() error {
	<-m.exited
	return m.waitErr
}

// Screendump writes a PNG of the guest's screen to path.
func (m *Machine) Screendump(ctx context.Context, path string) (screenStats, error) {
	ppm := filepath.Join(m.RunDir, "screen.ppm")
	if _, err := m.qmp.Do(ctx, "screendump", map[string]string{"filename": ppm}); err != nil {
		return screenStats{}, err
	}
	defer os.Remove(ppm)
	in, err := os.Open(ppm)
	if err != nil {
		return screenStats{}, err
	}
	defer in.Close()
	out, err := os.OpenFile(path+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return screenStats{}, err
	}
	img, err := PPMToPNG(in, out)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path + ".tmp")
		return screenStats{}, fmt.Errorf("screenshot: %w", err)
	}
	return statsOf(img), os.Rename(path+".tmp", path)
}

// Stop powers the machine off (QMP quit, then SIGKILL of its process
// group after 5 s) and removes the run directory unless KeepOverlays.
// It is safe to call more than once.
func (m *Machine) Stop() error {
	m.stopMu.Lock()
	defer m.stopMu.Unlock()
	if m.stopped {
		return nil
	}
	m.stopped = true
	if m.qmp != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, _ = m.qmp.Do(ctx, "quit", nil)
		cancel()
		m.qmp.Close()
	}
	if m.cmd != nil {
		select {
		case <-m.exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
			<-m.exited
		}
	}
	m.cleanup()
	return nil
}

// cleanup removes the overlays and the run directory (or, with
// KeepOverlays, everything but the overlays and the serial log).
func (m *Machine) cleanup() {
	if !m.opts.KeepOverlays {
		os.RemoveAll(m.RunDir)
		return
	}
	for _, n := range []string{"qmp.sock", "screen.ppm"} {
		os.Remove(filepath.Join(m.RunDir, n))
	}
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o600)
}

type limitedWriter struct {
	w interface{ Write([]byte) (int, error) }
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}
