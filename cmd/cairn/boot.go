package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/backupd/boot"
	"github.com/cairnbackup/cairn/blockmap"
)

func bootCommand() *cli.Command {
	return &cli.Command{
		Name:      "boot",
		Usage:     "start a recovery point as a local virtual machine (qemu; nothing is written to the point)",
		ArgsUsage: " ",
		Description: "Boots a point with qemu, shaped by its VM configuration (firmware, CPUs and memory\n" +
			"capped to the host, controllers, NICs); every disk is served read-only from the\n" +
			"point over NBD and written only to a throw-away qcow2 overlay. KVM when usable,\n" +
			"else TCG (said so). Ctrl-C, SIGTERM or `cairn boot --stop --vm V` power it off and\n" +
			"remove the overlays (--keep-overlay DIR keeps them). See docs/boot.md.",
		Flags: []cli.Flag{
			vmFlag(),
			pointFlag(),
			&cli.StringFlag{Name: "firmware", Usage: "bios or efi (needed for points without a VM configuration)"},
			&cli.StringFlag{Name: "network", Value: boot.NetworkIsolated, Usage: "none, isolated (NICs without a way out) or user (NAT)"},
			&cli.StringFlag{Name: "vnc", Usage: "VNC display `ADDR` (127.0.0.1:5901 or :1); default no display"},
			&cli.StringFlag{Name: "serial", Usage: "serial console to `FILE`, or - for this terminal"},
			&cli.StringFlag{Name: "keep-overlay", Usage: "create the overlays in `DIR` and keep them afterwards"},
			&cli.BoolFlag{Name: "stop", Usage: "power off the machine another `cairn boot --vm V` started"},
		},
		Action: bootAction,
	}
}

// bootStateFile records the pid of the `cairn boot` of a VM, for --stop.
func bootStateFile(vm string) (string, error) {
	dir := filepath.Join(os.TempDir(), "cairn-boot")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	return filepath.Join(dir, vm+".pid"), nil
}

func bootStop(vm string) error {
	f, err := bootStateFile(vm)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(f)
	if err != nil {
		return fmt.Errorf("boot --stop: no machine of VM %q is running (started by cairn boot on this host)", vm)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 || syscall.Kill(pid, syscall.SIGTERM) != nil {
		os.Remove(f)
		return fmt.Errorf("boot --stop: the machine of VM %q is no longer running", vm)
	}
	for range 300 {
		// ended: its state file is removed on exit (or it is gone, or a zombie)
		if _, err := os.Stat(f); err != nil || syscall.Kill(pid, 0) != nil || processZombie(pid) {
			fmt.Printf("stopped the machine of %s\n", vm)
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("boot --stop: cairn boot (pid %d) did not end within 30 s", pid)
}

func bootAction(c *cli.Context) error {
	vm := c.String("vm")
	if c.Bool("stop") {
		return bootStop(vm)
	}
	repo, p, err := openPoint(c)
	if err != nil {
		return err
	}
	defer repo.Close()
	state, err := bootStateFile(vm)
	if err != nil {
		return err
	}
	if data, err := os.ReadFile(state); err == nil {
		if pid, _ := strconv.Atoi(strings.TrimSpace(string(data))); pid > 0 && syscall.Kill(pid, 0) == nil {
			return fmt.Errorf("boot: a machine of VM %q is already running (cairn boot pid %d): stop it with cairn boot --stop --vm %s", vm, pid, vm)
		}
	}
	opts := boot.Options{Firmware: c.String("firmware"), Network: c.String("network"), VNC: c.String("vnc"),
		Serial: c.String("serial"), Logger: slog.Default()}
	if d := c.String("keep-overlay"); d != "" {
		opts.RunDir, opts.KeepOverlays = d, true
	} else if opts.RunDir, err = os.MkdirTemp("", "cairn-boot-"); err != nil {
		return err
	} else {
		defer os.RemoveAll(opts.RunDir) // also when the machine never started
	}
	// written before starting, so --stop also ends a machine still starting
	if err := os.WriteFile(state, []byte(strconv.Itoa(os.Getpid())), 0o600); err == nil {
		defer os.Remove(state)
	}
	pm, err := boot.StartPoint(c.Context, repo, p, opts)
	if err != nil {
		if c.Context.Err() != nil {
			// Ctrl-C or --stop while qemu was starting: what was asked,
			// not a qemu failure
			fmt.Fprintln(os.Stderr, "stopped before the machine was up")
			overlaysFate(opts, p)
			return nil
		}
		return fmt.Errorf("boot: %w", err)
	}
	fmt.Fprintf(os.Stderr, "booting %s point %s: firmware %s, %s, %d CPUs, %d MiB, network %s\n", p.VM, p.ID, pm.Firmware, strings.ToUpper(pm.Accel), pm.CPUs, pm.MemoryMB, c.String("network"))
	for _, n := range pm.Notes {
		fmt.Fprintf(os.Stderr, "  note: %s\n", n)
	}
	if opts.VNC != "" {
		fmt.Fprintf(os.Stderr, "  console: VNC %s\n", opts.VNC)
	}
	if pm.SerialLog != "" && opts.Serial != "" {
		fmt.Fprintf(os.Stderr, "  serial console: %s\n", pm.SerialLog)
	}
	if opts.KeepOverlays {
		fmt.Fprintf(os.Stderr, "  overlays kept in %s\n", opts.RunDir)
	}
	fmt.Fprintf(os.Stderr, "  Ctrl-C or `cairn boot --stop --vm %s` powers it off\n", vm)
	select {
	case <-c.Context.Done():
		pm.Stop()
		fmt.Fprintln(os.Stderr, "powered off")
		overlaysFate(opts, p)
		return nil
	case <-pm.Exited():
		err := pm.Err()
		pm.Stop()
		if err != nil {
			return fmt.Errorf("boot: qemu ended: %w", err)
		}
		fmt.Fprintln(os.Stderr, "the guest powered off")
		overlaysFate(opts, p)
		return nil
	}
}

// overlaysFate says what became of the overlays: removed, or kept (then
// how to use them again: their backing is the socket each disk was served
// on).
func overlaysFate(opts boot.Options, p blockmap.Point) {
	if !opts.KeepOverlays {
		fmt.Fprintln(os.Stderr, "overlays removed")
		return
	}
	fmt.Fprintf(os.Stderr, "overlays kept in %s; to boot them again, serve each disk on the socket its overlay is backed by:\n", opts.RunDir)
	for i, d := range p.Disks {
		fmt.Fprintf(os.Stderr, "  cairn nbd-export --vm %s --point %s --disk %s --socket %s   (%s)\n", p.VM, p.ID, d.Name, boot.DiskSocket(opts.RunDir, i), filepath.Join(opts.RunDir, d.Name+".qcow2"))
	}
}

func verifyBootCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify-boot",
		Usage:     "boot a point headless and isolated and decide whether it comes up and (--check) its applications answer (booted, failed, timeout)",
		ArgsUsage: " ",
		Description: "Boots the point (as cairn boot, network isolated, no display), watches the serial\n" +
			"console and takes QMP screenshots. booted: the serial console shows a login prompt\n" +
			"or --pattern, or the screen settled on a picture that is no known failure. failed:\n" +
			"kernel panic, no bootable device, GRUB prompt/rescue, EFI shell, a blank screen that\n" +
			"never changes, a blue stop screen. timeout otherwise. The verdict, last screenshot\n" +
			"(PNG) and serial log are kept in <repo>/bootchecks/<vm>/<point>/ (mount:\n" +
			"<point>/boot/). Exits 0 only for booted.\n\n" +
			"Application checks (--check, --check-script) run once the guest booted: each is\n" +
			"retried until it passes or --check-timeout runs out; any that fails makes the\n" +
			"verdict failed. The guest's network stays isolated (no way out); only the checked\n" +
			"ports are forwarded to 127.0.0.1.",
		Flags: []cli.Flag{
			vmFlag(),
			pointFlag(),
			&cli.DurationFlag{Name: "timeout", Value: 10 * time.Minute, Usage: "give up after this long (verdict timeout)"},
			&cli.StringFlag{Name: "pattern", Usage: "serial-console `RE` that means booted (default: a login prompt)"},
			&cli.DurationFlag{Name: "settle", Value: 90 * time.Second, Usage: "an unchanged non-blank screen for this long means booted"},
			&cli.StringFlag{Name: "firmware", Usage: "bios or efi (needed for points without a VM configuration)"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
			&cli.GenericFlag{Name: "check", Value: &areaLists{}, Usage: "after the boot, check the guest's application: tcp:PORT, http://:PORT/PATH[=STATUS][~REGEX] or https://... (repeatable; booted only if every check passes)"},
			&cli.GenericFlag{Name: "check-script", Value: &areaLists{}, Usage: "after the boot, run `CMD` (absolute program path and arguments, no shell) with CAIRN_GUEST_HOST, CAIRN_GUEST_PORT_<N>, CAIRN_SERIAL_LOG; exit 0 passes (repeatable)"},
			&cli.DurationFlag{Name: "check-timeout", Value: boot.DefaultCheckTimeout, Usage: "each check is retried until it passes or this runs out"},
		},
		Action: verifyBootAction,
	}
}

func verifyBootAction(c *cli.Context) error {
	repo, p, err := openPoint(c)
	if err != nil {
		return err
	}
	defer repo.Close()
	vo := boot.VerifyOptions{Timeout: c.Duration("timeout"), Settle: c.Duration("settle")}
	if s := c.String("pattern"); s != "" {
		if vo.Pattern, err = regexp.Compile(s); err != nil {
			return fmt.Errorf("--pattern: %w", err)
		}
	}
	if vo.Checks, err = verifyBootChecks(c); err != nil {
		return err
	}
	vo.CheckTimeout = c.Duration("check-timeout")
	work, err := os.MkdirTemp("", "cairn-verify-boot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	vo.Screenshot = filepath.Join(work, boot.ScreenshotFile)
	serial := filepath.Join(work, boot.SerialFile)
	opts := boot.Options{Firmware: c.String("firmware"), Network: boot.NetworkIsolated, Serial: serial,
		RunDir: filepath.Join(work, "run"), Logger: slog.Default(), Forwards: boot.CheckPorts(vo.Checks)}
	pm, err := boot.StartPoint(c.Context, repo, p, opts)
	if err != nil {
		return fmt.Errorf("verify-boot: %w", err)
	}
	res := boot.Verify(c.Context, pm.Machine, vo)
	pm.Stop()
	if c.Context.Err() != nil {
		// interrupted is no verdict: keep the last real one (cairn points,
		// the mount's boot/, serve's metrics show it)
		return fmt.Errorf("verify-boot of %s point %s cancelled: no verdict kept", p.VM, p.ID)
	}
	if err := boot.SaveResult(repo.Dir(), p.VM, p.ID, res, vo.Screenshot, serial); err != nil {
		return fmt.Errorf("verify-boot: save the result: %w", err)
	}
	if c.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(keptBootResult(repo.Dir(), p.VM, p.ID, res))
	} else {
		fmt.Printf("%s %s: %s (%s) after %.0f s [%s, %s]\n", p.VM, p.ID, res.Verdict, res.Reason, res.BootSeconds, res.Firmware, strings.ToUpper(res.Accel))
		printChecks(res.Checks)
		fmt.Printf("  result, screenshot and serial log: %s\n", boot.ResultsDir(repo.Dir(), p.VM, p.ID))
	}
	if res.Verdict != boot.VerdictBooted {
		return afterJSON(c.Bool("json"), fmt.Errorf("verify-boot: %s point %s: %s: %s", p.VM, p.ID, res.Verdict, res.Reason))
	}
	return nil
}

// processZombie reports whether pid has exited but was not reaped yet.
func processZombie(pid int) bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(st), ')')
	return i > 0 && strings.HasPrefix(string(st[i+1:]), " Z")
}

// verifyBootJSON is what verify-boot --json prints: the verdict as kept
// beside the point, with where it is kept.
type verifyBootJSON struct {
	VM    string `json:"vm"`
	Point string `json:"point"`
	// Dir holds result.json, screenshot.png and serial.log.
	Dir string `json:"dir"`
	boot.Result
}

// keptBootResult is res as SaveResult kept it, its screenshot and serial
// log named by their paths in the results directory (not the removed
// working files the check wrote them to).
func keptBootResult(repoDir, vm, point string, res boot.Result) verifyBootJSON {
	dir := boot.ResultsDir(repoDir, vm, point)
	if kept, ok := boot.LoadResult(repoDir, vm, point); ok {
		res = kept
	}
	res.Screenshot, res.SerialLog = keptFile(dir, res.Screenshot), keptFile(dir, res.SerialLog)
	return verifyBootJSON{VM: vm, Point: point, Dir: dir, Result: res}
}

func keptFile(dir, name string) string {
	if name == "" || filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(dir, name)
}
