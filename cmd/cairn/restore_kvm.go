package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/backupd/kvmrestore"
	"github.com/cairnbackup/cairn/backupd/vmconfig"
	"github.com/cairnbackup/cairn/internal/bytesize"
)

func restoreKVMCommand() *cli.Command {
	return &cli.Command{
		Name:  "kvm",
		Usage: "restore a point to KVM/libvirt: disk images and a libvirt domain XML (optionally defined and started)",
		Description: "Writes every disk of the point into --dir as NAME-<disk>.qcow2 (sparse; or .raw with\n" +
			"--format raw), read straight from the repository (holes stay holes), a UEFI guest's\n" +
			"variables (NAME_VARS.fd, from OVMF) and the libvirt domain NAME.xml: memory, vCPUs\n" +
			"(sockets x cores), BIOS or UEFI (secure boot as recorded), machine q35, the disks in the\n" +
			"VM's boot order, NICs with their MAC addresses, a serial console and VNC on 127.0.0.1.\n" +
			"The guest OS decides the devices (--bus auto): Linux gets virtio-scsi disks and virtio\n" +
			"NICs, Windows SATA disks and e1000e NICs (its own drivers; install virtio-win first for\n" +
			"--bus virtio), other guests the controllers and NICs a boot check uses.\n" +
			"Every NIC's vSphere network needs a target: --network 'VM Network=default' (a libvirt\n" +
			"network), =bridge:br0, =user or =none (NIC left out); or --network-default TARGET for\n" +
			"the rest. What the domain cannot have (vTPM, PCI passthrough, disks the point holds no\n" +
			"data of, VMware-only devices, datastore ISOs) is listed. Files are written under\n" +
			"temporary names and renamed when all are complete: a failed or cancelled (Ctrl-C)\n" +
			"restore removes them and says so. An existing file is refused unless --force.\n" +
			"--define defines the domain with virsh on --connect (refused if a domain of that name\n" +
			"exists), --start starts it; without --define the next step is printed. A point without\n" +
			"a VM configuration (an import) needs --vm-config FILE. See docs/restore.md.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "vm", Required: true, Usage: "the VM's `NAME` in the repository"},
			&cli.StringFlag{Name: "point", Value: "latest", Usage: "point `ID` or latest"},
			&cli.StringFlag{Name: "dir", Required: true, Usage: "`DIR` for the disk images, UEFI variables and domain XML (made if missing)"},
			&cli.StringFlag{Name: "name", Usage: "name of the libvirt domain and of its files (default: the recorded VM name)"},
			&cli.StringFlag{Name: "format", Value: kvmrestore.FormatQCOW2, Usage: "disk image format: qcow2 or raw"},
			&cli.StringFlag{Name: "bus", Value: kvmrestore.BusAuto, Usage: "disk bus: auto (by guest OS), virtio (virtio-blk), scsi (virtio-scsi) or sata"},
			&cli.StringSliceFlag{Name: "network", Usage: "OLD=TARGET: NICs of vSphere network OLD go to TARGET: a libvirt network name, bridge:BR, user or none (repeatable)"},
			&cli.StringFlag{Name: "network-default", Usage: "`TARGET` for the NICs of every network no --network names"},
			&cli.StringFlag{Name: "mac", Value: "keep", Usage: "keep the recorded MAC addresses and SMBIOS UUID, or new (libvirt makes new ones: a copy beside the original)"},
			&cli.StringFlag{Name: "domain-type", Usage: "kvm or qemu (software emulation); default: kvm where this machine has hardware virtualization"},
			&cli.StringFlag{Name: "serial-log", Usage: "`FILE` that takes the serial console (default: a pty, virsh console)"},
			&cli.StringFlag{Name: "vm-config", Usage: "`FILE`: VM configuration (vm/config.json format) for a point without one"},
			&cli.BoolFlag{Name: "force", Usage: "overwrite existing files in --dir"},
			&cli.BoolFlag{Name: "define", Usage: "define the domain with virsh"},
			&cli.StringFlag{Name: "connect", Value: kvmrestore.DefaultURI, Usage: "libvirt `URI` for --define and --start"},
			&cli.BoolFlag{Name: "start", Usage: "start the domain (implies --define)"},
			jsonFlag(),
		},
		Action: restoreKVMAction,
	}
}

// restoreKVMJSON is what restore kvm --json prints.
type restoreKVMJSON struct {
	*kvmrestore.Result
	Defined  bool   `json:"defined"`
	Started  bool   `json:"started"`
	URI      string `json:"uri,omitempty"`
	NextStep string `json:"next_step,omitempty"`
}

func restoreKVMAction(c *cli.Context) error {
	spec := kvmrestore.Spec{Name: c.String("name"), Dir: c.String("dir"), Format: c.String("format"), Bus: c.String("bus"),
		DomainType: c.String("domain-type"), SerialLog: c.String("serial-log"), Force: c.Bool("force"),
		Networks: map[string]kvmrestore.NetworkTarget{}}
	switch c.String("mac") {
	case "keep":
	case "new":
		spec.NewIdentity = true
	default:
		return fmt.Errorf("--mac %q: want keep or new", c.String("mac"))
	}
	for _, m := range c.StringSlice("network") {
		old, target, ok := strings.Cut(m, "=")
		if !ok {
			return fmt.Errorf("--network %q: want OLD=TARGET (the recorded vSphere network = a libvirt network, bridge:BR, user or none)", m)
		}
		t, err := kvmrestore.ParseNetworkTarget(target)
		if err != nil {
			return fmt.Errorf("--network %q: %w", m, err)
		}
		spec.Networks[old] = t
	}
	if d := c.String("network-default"); d != "" {
		t, err := kvmrestore.ParseNetworkTarget(d)
		if err != nil {
			return fmt.Errorf("--network-default: %w", err)
		}
		spec.NetworkDefault = &t
	}
	cfg, err := restoreVMConfig(c)
	if err != nil {
		return err
	}
	define := c.Bool("define") || c.Bool("start")
	virsh := kvmrestore.Virsh{URI: c.String("connect")}
	repo, err := openRepo(c)
	if err != nil {
		return err
	}
	defer repo.Close()
	p, err := repo.ResolvePoint(c.Context, c.String("vm"), c.String("point"))
	if err != nil {
		return err
	}
	req := kvmrestore.Request{Point: p, Config: cfg, Spec: spec, Progress: func(d kvmrestore.PlannedDisk, size int64) {
		if !c.Bool("json") {
			fmt.Fprintf(os.Stderr, "writing disk %s (%s) to %s\n", d.Name, bytesize.IEC(size), d.File)
		}
	}}
	plan, err := kvmrestore.Prepare(c.Context, repo, req)
	if err != nil {
		return kvmAdvice(err)
	}
	if define {
		// before the long copy: the connection works and the name is free
		if err := virsh.Check(c.Context, plan.Name); err != nil {
			if errors.Is(err, kvmrestore.ErrDomainExists) {
				return fmt.Errorf("%w: choose another --name, or remove it first (virsh -c %s undefine %s)", err, c.String("connect"), plan.Name)
			}
			return err
		}
	}
	res, err := kvmrestore.Restore(c.Context, repo, req)
	if err != nil {
		var re *kvmrestore.RemovedError
		extra := map[string]any{}
		if errors.As(err, &re) {
			extra["removed_files"] = re.Removed
		}
		if c.Context.Err() != nil {
			err = fmt.Errorf("restore cancelled: %w", err)
		}
		return restoreFailure(c.Context, p, kvmAdvice(err), extra)
	}
	out := restoreKVMJSON{Result: res}
	if define {
		out.URI = c.String("connect")
		if dirs := kvmrestore.Unreachable(spec.Dir); len(dirs) > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("libvirt's qemu user may not reach the disks: %s not searchable by others (chmod o+x)", strings.Join(dirs, ", ")))
		}
		if g, err := res.ShareWithQEMU(); err != nil {
			return fmt.Errorf("give libvirt's qemu read access to the disks: %w", err)
		} else if g != "" {
			res.Notes = append(res.Notes, "disks and UEFI variables readable by group "+g+" (libvirt's qemu)")
		}
		if err := virsh.Define(c.Context, res.XMLFile); err != nil {
			return fmt.Errorf("%w (the files are written and complete: fix the cause and run virsh -c %s define %s)", err, out.URI, res.XMLFile)
		}
		out.Defined = true
		if c.Bool("start") {
			if err := virsh.Start(c.Context, res.Name); err != nil {
				return fmt.Errorf("%w (the domain %s is defined: fix the cause and run virsh -c %s start %s)", err, res.Name, out.URI, res.Name)
			}
			out.Started = true
		}
	} else {
		out.NextStep = fmt.Sprintf("virsh -c %s define %s && virsh -c %s start %s", c.String("connect"), res.XMLFile, c.String("connect"), res.Name)
	}
	if c.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	fmt.Printf("%s\tpoint %s of %s\t%s\t%s, %d vCPU, %d MiB\n", res.Name, res.Point, res.VM, res.XMLFile, res.Firmware, res.CPUs, res.MemoryMB)
	for _, d := range res.Disks {
		fmt.Printf("\t%s -> %s\t%s %s\tboot %d\tdata %s of %s\n", d.Name, d.File, d.Bus, d.Dev, d.BootOrder, bytesize.IEC(res.DataBytes[d.Name]), bytesize.IEC(res.Sizes[d.Name]))
	}
	for _, n := range res.NICs {
		mac := n.MAC
		if mac == "" {
			mac = "new MAC"
		}
		fmt.Printf("\tNIC %q -> %s\t%s\t%s\n", n.Network, n.Target, n.Model, mac)
	}
	switch {
	case out.Started:
		fmt.Printf("defined and started on %s\n", out.URI)
	case out.Defined:
		fmt.Printf("defined on %s\n", out.URI)
	default:
		fmt.Printf("next: %s\n", out.NextStep)
	}
	for _, n := range res.NotCarried {
		fmt.Fprintf(os.Stderr, "cairn: not carried over: %s\n", n)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(os.Stderr, "cairn: note: %s\n", n)
	}
	return nil
}

// kvmAdvice adds the fix to the errors a KVM restore refuses with.
func kvmAdvice(err error) error {
	var ue *kvmrestore.UnmappedError
	var ee *kvmrestore.ExistsError
	switch {
	case errors.As(err, &ue):
		return fmt.Errorf("%w: give each a target (--network 'NAME=default', =bridge:br0, =user or =none), or --network-default TARGET for all", err)
	case errors.As(err, &ee):
		return fmt.Errorf("%w: remove it, choose another --dir or --name, or overwrite with --force", err)
	case errors.Is(err, kvmrestore.ErrNoConfig):
		return fmt.Errorf("%w (an imported point?): give --vm-config FILE (the vm/config.json format, see docs/restore.md)", err)
	}
	return err
}

// restoreVMConfig reads --vm-config (nil when not given): the
// configuration for a point that has none (restore vm and restore kvm).
func restoreVMConfig(c *cli.Context) (*vmconfig.Config, error) {
	f := c.String("vm-config")
	if f == "" {
		return nil, nil
	}
	data, err := os.ReadFile(f)
	if err != nil {
		return nil, fmt.Errorf("--vm-config: %w", err)
	}
	cfg, err := vmconfig.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("--vm-config %s: %w (the format is that of a point's vm/config.json)", f, err)
	}
	return cfg, nil
}
