package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/nbd"
	"github.com/cairnbackup/cairn/backupd/vmconfig"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/bytesize"
)

// restoreCommands is `cairn restore vm|disk|cleanup|kvm`.
func restoreCommands() []*cli.Command {
	return []*cli.Command{{
		Name:  "restore",
		Usage: "bring a VM (or one disk) of a recovery point back to vSphere, or to KVM/libvirt",
		Subcommands: []*cli.Command{
			restoreVMCommand(),
			restoreDiskCommand(),
			restoreInstantCommand(),
			restoreCleanupCommand(),
			restoreKVMCommand(),
		},
	}}
}

// restoreConnFlags are the connection and write-transport flags of the
// restore commands (the same names as cairn backup's).
func restoreConnFlags() []cli.Flag {
	return append(vcenterConnFlags(),
		&cli.StringFlag{Name: "transport", Value: backupd.WriteTransportNFC + "," + backupd.WriteTransportNBD, Usage: "write transports to try in order: nfc (OVF import, new VMs only), nbd, hotadd"},
		&cli.StringFlag{Name: "proxy-vm", Usage: "the appliance's own VM, for hotadd (and to detach disks a killed hotadd restore left on it)"},
		&cli.StringFlag{Name: "nbd-command", Value: backupd.DefaultRestoreNBDCommand, Usage: "NBD server command `TEMPLATE` started per target disk (writable: no --readonly; split at spaces and run without a shell)"},
		&cli.DurationFlag{Name: "nbd-stall-timeout", Value: 60 * time.Second, Usage: "fail an NBD connection that makes no progress for this long"},
		&cli.IntFlag{Name: "nbd-retries", Value: 5, Usage: "retries of a failed NBD write"},
		&cli.StringSliceFlag{Name: "datastore-dir", Usage: "NAME=DIR: a datastore mounted on this machine ({disk_local_path})"},
		&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
	)
}

func restoreVMCommand() *cli.Command {
	return &cli.Command{
		Name:  "vm",
		Usage: "create a VM from a point (or roll the original VM back to it with --in-place)",
		Description: "Creates a new VM from the point's recorded configuration (firmware, CPUs, memory,\n" +
			"controllers, disks, NICs), creates its disks and writes only their data areas (holes\n" +
			"stay holes). New UUIDs and MAC addresses unless --keep-identity. It goes back where the\n" +
			"original was (folder, resource pool, host, each disk's datastore, networks) as the point\n" +
			"records it; each of --folder, --host/--cluster/--resource-pool, --datastore and --network\n" +
			"overrides its part, and a recorded item that no longer exists falls back to the default\n" +
			"alone, with a line saying so (points made before cairn recorded placement use the\n" +
			"defaults). A VM of the same name is never touched unless --replace (it is powered off\n" +
			"and its disks overwritten).\n" +
			"--in-place rolls the original, powered-off VM back: only the areas CBT reports changed\n" +
			"since the point are written; where CBT cannot tell (another epoch, a resized disk) it\n" +
			"says so, and --full overwrites every disk instead. Ctrl-C cancels; a failed or\n" +
			"cancelled restore removes the VM it created (or renames it NAME-failed-restore when\n" +
			"removal fails). A VM left by a killed cairn carries the extraConfig key\n" +
			vsphere.RestoreMarkerKey + " and is removed by the next restore or `cairn restore cleanup`.\n" +
			"NBD command placeholders: {socket} {server} {user} {password_file} {thumbprint}\n" +
			"{vm_moref} {disk_file} {disk_local_path} {vm} {disk}. --remote NAME reads the point\n" +
			"(disks and VM configuration) from that offsite remote, without pulling it. See docs/restore.md.",
		Flags: append(restoreConnFlags(),
			&cli.StringFlag{Name: "vm", Required: true, Usage: "the VM's `NAME` in the repository"},
			&cli.StringFlag{Name: "point", Value: "latest", Usage: "point `ID` or latest"},
			&cli.StringFlag{Name: "name", Usage: "name of the restored VM (default: the recorded name)"},
			&cli.StringFlag{Name: "host", Usage: "ESXi host to place the VM on (not with --cluster; default: the original host and resource pool, else the datacenter's first host)"},
			&cli.StringFlag{Name: "cluster", Usage: "cluster to place the VM in (not with --host; default: the original's)"},
			&cli.StringFlag{Name: "resource-pool", Usage: "resource `POOL` (inventory path, or path below the datacenter's host folder: C1/Resources/web; not with --cluster; default: the original's)"},
			&cli.StringFlag{Name: "datastore", Usage: "datastore for the VM's files and every disk (default: each disk's original datastore, else the host's first datastore)"},
			&cli.StringFlag{Name: "folder", Usage: "VM folder (inventory path, or path below the datacenter's VM folder; default: the original's folder, else the VM folder itself)"},
			&cli.StringSliceFlag{Name: "network", Usage: "OLD=NEW: connect NICs of network OLD to NEW (repeatable)"},
			&cli.StringFlag{Name: "disk-provisioning", Usage: "thin, thick or eager for every disk (default: as recorded)"},
			&cli.StringFlag{Name: "vm-config", Usage: "`FILE`: VM configuration (vm/config.json format) for a point without one"},
			&cli.BoolFlag{Name: "power-on", Usage: "power the VM on after the restore"},
			&cli.BoolFlag{Name: "keep-identity", Usage: "keep the BIOS/instance UUIDs and MAC addresses"},
			&cli.BoolFlag{Name: "replace", Usage: "overwrite an existing VM of that name (powered off first; it stays off if the restore fails)"},
			&cli.BoolFlag{Name: "in-place", Usage: "roll the original VM back (powered off, CBT intact since the point)"},
			&cli.BoolFlag{Name: "full", Usage: "with --in-place: overwrite every disk instead of the changed areas"},
			remoteFlag, limitRateFlag,
		),
		Action: restoreVMAction,
	}
}

func restoreSetup(c *cli.Context) (*blockmap.Repo, *vsphere.Conn, backupd.RestoreOptions, error) {
	var opts backupd.RestoreOptions
	var transports []string
	for _, t := range strings.Split(c.String("transport"), ",") {
		if t = strings.TrimSpace(t); t != "" {
			if t != backupd.WriteTransportNBD && t != backupd.WriteTransportHotAdd && t != backupd.WriteTransportNFC {
				return nil, nil, opts, fmt.Errorf("--transport %q: restores write through nfc, nbd or hotadd", t)
			}
			transports = append(transports, t)
		}
	}
	dirs, err := parseDatastoreDirs(c.StringSlice("datastore-dir"))
	if err != nil {
		return nil, nil, opts, err
	}
	repo, conn, creds, err := openRepoAndVCenter(c)
	if err != nil {
		return nil, nil, opts, err
	}
	opts = backupd.RestoreOptions{
		Transports: transports, NBDCommand: c.String("nbd-command"),
		NBD:           nbd.Options{StallTimeout: c.Duration("nbd-stall-timeout"), Retries: c.Int("nbd-retries")},
		DatastoreDirs: dirs, Credentials: creds, Thumbprint: c.String("thumbprint"), Progress: diskProgress(),
		ProxyVM: c.String("proxy-vm"),
	}
	if opts.NBD.Retries == 0 {
		opts.NBD.Retries = -1
	}
	return repo, conn, opts, nil
}

func restoreVMAction(c *cli.Context) error {
	networks, cfg, err := networkAndConfigFlags(c)
	if err != nil {
		return err
	}
	switch p := c.String("disk-provisioning"); p {
	case "", vmconfig.ProvisioningThin, vmconfig.ProvisioningThick, vmconfig.ProvisioningEager:
	default:
		return fmt.Errorf("--disk-provisioning %q: use thin, thick or eager", p)
	}
	if c.Bool("full") && !c.Bool("in-place") {
		return errors.New("--full goes with --in-place (a new VM is always written whole)")
	}
	if c.Bool("in-place") && c.String("remote") != "" {
		return errors.New("--in-place with --remote is not offered: pull the point first (cairn pull --remote NAME --vm VM --point ID), then restore vm --in-place")
	}
	if c.String("host") != "" && c.String("cluster") != "" {
		return errors.New("--host and --cluster exclude each other: the VM goes to a host, or to a cluster (which picks the host)")
	}
	if c.String("resource-pool") != "" && c.String("cluster") != "" {
		return errors.New("--resource-pool and --cluster exclude each other: a resource pool belongs to one cluster (or host) already")
	}
	if c.Bool("in-place") && c.Bool("replace") {
		return errors.New("--in-place and --replace exclude each other: --in-place rolls the VM back, --replace overwrites a VM of the target name")
	}
	repo, conn, opts, err := restoreSetup(c)
	if err != nil {
		return err
	}
	defer repo.Close()
	defer conn.Close()
	p, closeSrc, err := resolveRestorePoint(c, repo, &opts)
	if err != nil {
		return err
	}
	defer closeSrc()
	req := backupd.RestoreRequest{
		Point: p, Config: cfg, PowerOn: c.Bool("power-on"), Replace: c.Bool("replace"),
		InPlace: c.Bool("in-place"), Full: c.Bool("full"), VCenter: conn.URL.Host,
		Create: vsphere.CreateSpec{
			Name: c.String("name"), Host: c.String("host"), Cluster: c.String("cluster"), ResourcePool: c.String("resource-pool"), Datastore: c.String("datastore"),
			Folder: c.String("folder"), Networks: networks, Provisioning: c.String("disk-provisioning"), KeepIdentity: c.Bool("keep-identity"),
		},
	}
	if req.InPlace && req.Create.Name == "" {
		req.Create.Name = p.VM
	}
	lock, err := backupd.LockRestoreTarget(c.Context, repo, req)
	if err != nil {
		return err
	}
	defer lock.Release()
	res, err := backupd.Restore(c.Context, repo, backupd.NewVSphere(conn), req, opts)
	if err != nil {
		err = restoreFailure(c.Context, p, err, nil) // what --json's error object says it did
		switch {
		case errors.Is(err, backupd.ErrNoVMConfig):
			return fmt.Errorf("%w: this point was imported without one; give --vm-config FILE (the vm/config.json format, see docs/restore.md)", err)
		case errors.Is(err, c.Context.Err()) && c.Context.Err() != nil:
			return fmt.Errorf("restore cancelled: %w", err)
		}
		return withRestoreAdvice(fmt.Errorf("restore of %s point %s: %w", p.VM, p.ID, err))
	}
	if c.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(restoreVMJSON{RestoreResult: res, BytesWritten: res.BytesWritten(), PoweredOn: req.PowerOn})
	}
	powered := ""
	if req.PowerOn {
		powered = "\tpowered on"
	}
	fmt.Printf("%s\t%s\t%s\tpoint %s\twritten %s%s\n", res.VM, res.MoRef, res.Mode, res.Point, bytesize.IEC(res.BytesWritten()), powered)
	for _, d := range res.Disks {
		extra := ""
		if res.Mode == "rollback" {
			extra = "\tCBT changed " + bytesize.IEC(d.ChangedBytes)
		}
		tr := d.Transport
		if tr == "" {
			tr = "unchanged" // a rollback's disk CBT reports no change in: nothing opened
		}
		fmt.Printf("\t%s -> %s\t%s\twritten %s\tzeroed %s%s\n", d.Name, d.Target, tr, bytesize.IEC(d.BytesWritten), bytesize.IEC(d.ZeroBytes), extra)
	}
	printPlacement(os.Stdout, res.Placement)
	for _, w := range res.Warnings {
		fmt.Fprintf(os.Stderr, "cairn: warning: %s\n", w)
	}
	return nil
}

func restoreCleanupCommand() *cli.Command {
	return &cli.Command{
		Name:  "cleanup",
		Usage: "remove VMs (and instant recovery datastores) left by restores that were killed",
		Description: "Lists the VMs carrying the extraConfig key " + vsphere.RestoreMarkerKey + " (set while a\n" +
			"restore creates a VM, cleared when it finished) and destroys those whose cairn process\n" +
			"on this machine is gone. Markers of other machines or of running restores are listed.\n" +
			"Then removes the NFS datastores of instant recovery (cairn-*) that no VM uses any more.",
		Flags: restoreConnFlags(),
		Action: func(c *cli.Context) error {
			conn, _, err := connectVCenter(c)
			if err != nil {
				return err
			}
			defer conn.Close()
			removed, err := backupd.CleanupRestores(c.Context, backupd.NewVSphere(conn), c.String("proxy-vm"), slog.Default())
			if err == nil { // instant recovery's NFS datastores that no VM uses any more
				var ds []string
				ds, err = backupd.CleanupInstantDatastores(c.Context, conn, slog.Default())
				removed = append(removed, ds...)
			}
			for _, n := range removed {
				fmt.Printf("removed %s\n", n)
			}
			if err == nil && len(removed) == 0 {
				fmt.Println("no VM left by an interrupted restore to remove")
			}
			return err
		},
	}
}

func restoreDiskCommand() *cli.Command {
	return &cli.Command{
		Name:  "disk",
		Usage: "attach a restored copy of one disk of a point to another VM",
		Description: "Creates a new disk of the point disk's capacity on --to-vm (on --controller, or the\n" +
			"first controller with a free unit), writes the point's data areas to it and leaves it\n" +
			"attached. A failed or cancelled restore removes the new disk again. With the VDDK NBD\n" +
			"command the target VM should be powered off (a running VM locks its disks).",
		Flags: append(restoreConnFlags(),
			&cli.StringFlag{Name: "vm", Required: true, Usage: "the VM's `NAME` in the repository"},
			&cli.StringFlag{Name: "point", Value: "latest", Usage: "point `ID` or latest"},
			&cli.StringFlag{Name: "disk", Required: true, Usage: "the disk's `NAME` in the point (scsi0-1)"},
			&cli.StringFlag{Name: "to-vm", Required: true, Usage: "`VM` that receives the disk (name, inventory path or MoRef)"},
			&cli.StringFlag{Name: "controller", Usage: "controller of the target (scsi0, sata0, nvme0)"},
			&cli.StringFlag{Name: "disk-provisioning", Value: vmconfig.ProvisioningThin, Usage: "thin, thick or eager"},
			// Not offered; accepted only to say what to do instead of
			// "flag provided but not defined".
			&cli.StringFlag{Name: "remote", Hidden: true},
		),
		Action: func(c *cli.Context) error {
			if r := c.String("remote"); r != "" {
				return fmt.Errorf("restore disk --remote is not offered: pull the point first (cairn pull --remote %s --vm %s --point %s), then cairn restore disk", r, c.String("vm"), c.String("point"))
			}
			repo, conn, opts, err := restoreSetup(c)
			if err != nil {
				return err
			}
			defer repo.Close()
			defer conn.Close()
			p, err := repo.ResolvePoint(c.Context, c.String("vm"), c.String("point"))
			if err != nil {
				return err
			}
			res, err := backupd.RestoreDisk(c.Context, repo, backupd.NewVSphere(conn), backupd.RestoreDiskRequest{
				Point: p, Disk: c.String("disk"), TargetVM: c.String("to-vm"), Controller: c.String("controller"),
				Provisioning: c.String("disk-provisioning"), VCenter: conn.URL.Host,
			}, opts)
			if err != nil {
				err = restoreFailure(c.Context, p, err, map[string]any{"disk": c.String("disk"), "to_vm": c.String("to-vm")})
				return withRestoreAdvice(fmt.Errorf("restore of disk %s of %s point %s: %w", c.String("disk"), p.VM, p.ID, err))
			}
			if c.Bool("json") {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(restoreDiskJSON{RestoreResult: res, BytesWritten: res.BytesWritten()})
			}
			d := res.Disks[0]
			fmt.Printf("%s\t%s -> %s\t%s\twritten %s\n", res.VM, d.Name, d.Target, d.Transport, bytesize.IEC(d.BytesWritten))
			return nil
		},
	}
}

// restoreVMJSON is what restore vm --json prints: the result with the
// totals the text line shows (bytes written, powered on).
type restoreVMJSON struct {
	*backupd.RestoreResult
	BytesWritten int64 `json:"bytes_written"`
	PoweredOn    bool  `json:"powered_on"`
}
