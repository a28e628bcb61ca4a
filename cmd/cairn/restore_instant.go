package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/nbdserve"
	"github.com/cairnbackup/cairn/backupd/nfsserve"
	"github.com/cairnbackup/cairn/backupd/vmconfig"
	"github.com/cairnbackup/cairn/backupd/vsphere"
)

// nfsListenFlags are the listeners of an NFS export of a point.
func nfsListenFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "listen", Value: ":2049", Usage: "TCP `ADDR` of the NFS server (ESXi connects to port 2049)"},
		&cli.StringFlag{Name: "mount-listen", Usage: "TCP `ADDR` of the MOUNT server (default: the --listen host, a free port; the portmapper tells clients)"},
		&cli.StringFlag{Name: "portmap", Value: ":111", Usage: "`ADDR` (TCP and UDP) of the portmapper clients ask where MOUNT is (ESXi and libnfs ask port 111); \"off\": none (another rpcbind answers)"},
		&cli.StringSliceFlag{Name: "allow", Usage: "`ADDR` or ADDR/BITS of the clients that may connect (repeatable, or comma-separated; \"any\": everyone). Default: nfs-export this machine only; restore instant the ESXi host's addresses (give its storage network's address when it mounts from another)"},
		&cli.StringFlag{Name: "session-dir", Required: true, Usage: "`DIR` that keeps the session: the overlays taking the writes and the hypervisor's files (reusable: a new export continues it)"},
	}
}

// nfsListeners opens the NFS, MOUNT and portmapper listeners.
func nfsListeners(c *cli.Context) (nfsLn, mountLn, pmLn net.Listener, pmUDP net.PacketConn, err error) {
	closeAll := func() {
		for _, l := range []net.Listener{nfsLn, mountLn, pmLn} {
			if l != nil {
				l.Close()
			}
		}
		if pmUDP != nil {
			pmUDP.Close()
		}
	}
	listen := func(flag, addr string) (net.Listener, error) {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return nil, fmt.Errorf("--%s %s: the port is in use (an NFS server or rpcbind of this machine?): stop it or choose another address", flag, addr)
			}
			return nil, fmt.Errorf("--%s %s: %w", flag, addr, err)
		}
		return l, nil
	}
	if nfsLn, err = listen("listen", c.String("listen")); err != nil {
		return
	}
	maddr := c.String("mount-listen")
	if maddr == "" {
		host, _, _ := net.SplitHostPort(c.String("listen"))
		maddr = net.JoinHostPort(host, "0")
	}
	if mountLn, err = listen("mount-listen", maddr); err != nil {
		closeAll()
		return
	}
	if pm := c.String("portmap"); pm != "off" {
		if pmLn, err = listen("portmap", pm); err != nil {
			closeAll()
			return
		}
		if pmUDP, err = net.ListenPacket("udp", pmLn.Addr().String()); err != nil {
			err = fmt.Errorf("--portmap %s (UDP): %w", pm, err)
			closeAll()
			return
		}
	}
	return
}

func nfsExportCommand() *cli.Command {
	return &cli.Command{
		Name:      "nfs-export",
		Usage:     "serve the disks of a recovery point over NFSv3 (writes go to overlays in --session-dir)",
		ArgsUsage: " ",
		Description: "Serves every disk of a point as a VMware flat file NAME-flat.vmdk with its descriptor\n" +
			"NAME.vmdk under the export path /cairn, until interrupted. Reads come from the point;\n" +
			"writes go to a sparse overlay per disk in --session-dir (the point is never written);\n" +
			"any other file a client creates (.vmx, logs, locks) lands in DIR/files. An ESXi host can\n" +
			"mount it as an NFS 3 datastore (server: this machine, folder: /cairn); qemu can use\n" +
			"-drive file=nfs://HOST/cairn/NAME-flat.vmdk,format=raw. `cairn restore instant` does\n" +
			"the whole instant recovery on vSphere. No authentication: serve on the storage network;\n" +
			"only this machine may connect unless --allow names the clients' addresses or networks.",
		Flags:  append([]cli.Flag{vmFlag(), pointFlag()}, nfsListenFlags()...),
		Action: nfsExportAction,
	}
}

func nfsExportAction(c *cli.Context) error {
	repo, p, err := openPoint(c)
	if err != nil {
		return fmt.Errorf("nfs-export: %w", err)
	}
	defer repo.Close()
	allow, err := allowFlag(c)
	if err != nil {
		return fmt.Errorf("nfs-export: %w", err)
	}
	exp, err := nfsserve.Open(c.Context, nfsserve.Options{SessionDir: c.String("session-dir"), Point: p, Logger: slog.Default(), Allow: allow,
		OpenDisk: func(ctx context.Context, disk string) (nbdserve.Source, error) { return repo.OpenDisk(ctx, p, disk) }})
	if err != nil {
		return fmt.Errorf("nfs-export: %w", err)
	}
	defer exp.Close()
	nfsLn, mountLn, pmLn, pmUDP, err := nfsListeners(c)
	if err != nil {
		return fmt.Errorf("nfs-export: %w", err)
	}
	ctx, cancel := context.WithCancel(c.Context)
	defer cancel()
	errc := make(chan error, 3)
	go func() { errc <- exp.Serve(ctx, nfsLn) }()
	go func() { errc <- exp.ServeMount(ctx, mountLn, nil) }()
	n := 2
	if pmLn != nil {
		pm := &nfsserve.Portmapper{NFSPort: nfsLn.Addr().(*net.TCPAddr).Port, MountPort: mountLn.Addr().(*net.TCPAddr).Port, Allow: allow}
		go func() { errc <- pm.Serve(ctx, pmLn, pmUDP) }()
		n++
	}
	slog.Info("serving over NFS", "allow", allow.String(), "vm", p.VM, "point", p.ID, "nfs", nfsLn.Addr().String(), "mount", mountLn.Addr().String(), "session", c.String("session-dir"))
	host := nfsLn.Addr().(*net.TCPAddr).IP.String()
	if ip := nfsLn.Addr().(*net.TCPAddr).IP; ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	for _, d := range exp.Disks() {
		fmt.Printf("nfs://%s%s/%s?nfsport=%d&mountport=%d\n", host, nfsserve.ExportPath, d.Flat, nfsLn.Addr().(*net.TCPAddr).Port, mountLn.Addr().(*net.TCPAddr).Port)
	}
	var first error
	for range n {
		if err := <-errc; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}

func restoreInstantCommand() *cli.Command {
	return &cli.Command{
		Name:  "instant",
		Usage: "run a VM on vSphere straight from a point (NFS datastore), then migrate it or stop",
		Description: "Instant recovery: serves the point's disks over NFS from this machine (as nfs-export),\n" +
			"mounts the export on the ESXi host as the NFS datastore cairn-<vm>-<point>, registers a\n" +
			"new VM of the point's configuration on those disks and powers it on (--power-on). The\n" +
			"VM's writes go to overlays in --session-dir, never into the point. The command stays in\n" +
			"the foreground while the VM runs from the backup:\n" +
			"  Ctrl-C (SIGINT/SIGTERM) stops the session: powers the VM off, deletes it, removes the\n" +
			"    datastore and the overlays (what the VM wrote is gone).\n" +
			"  SIGUSR1 (kill -USR1 PID) migrates: Storage vMotion of the running VM to --migrate-to,\n" +
			"    then the datastore is removed and the session ends; the VM stays. --migrate-now\n" +
			"    migrates as soon as the VM runs.\n" +
			"The ESXi host must reach --nfs-host on TCP 2049 (NFS), 111 (portmapper, TCP and UDP)\n" +
			"and the MOUNT port. On any failure everything made is removed again; what a killed\n" +
			"session leaves, `cairn restore cleanup` removes.",
		Flags: append(append(vcenterConnFlags(),
			&cli.StringFlag{Name: "vm", Required: true, Usage: "the VM's `NAME` in the repository"},
			&cli.StringFlag{Name: "point", Value: "latest", Usage: "point `ID` or latest"},
			&cli.StringFlag{Name: "name", Usage: "name of the new VM (default: the recorded name; it must not exist)"},
			&cli.StringFlag{Name: "host", Usage: "ESXi host that mounts the export and runs the VM (not with --cluster; default: the original's, else the first host)"},
			&cli.StringFlag{Name: "cluster", Usage: "cluster whose (original, else first) host runs the VM (not with --host)"},
			&cli.StringFlag{Name: "resource-pool", Usage: "resource `POOL` (as for restore vm)"},
			&cli.StringFlag{Name: "folder", Usage: "VM folder (as for restore vm)"},
			&cli.StringSliceFlag{Name: "network", Usage: "OLD=NEW: connect NICs of network OLD to NEW (repeatable)"},
			&cli.StringFlag{Name: "vm-config", Usage: "`FILE`: VM configuration (vm/config.json format) for a point without one"},
			&cli.BoolFlag{Name: "power-on", Usage: "power the VM on once it is registered"},
			&cli.BoolFlag{Name: "keep-identity", Usage: "keep the BIOS/instance UUIDs and MAC addresses"},
			&cli.StringFlag{Name: "nfs-host", Required: true, Usage: "this machine's `ADDR` as the ESXi host reaches it (the datastore's NFS server)"},
			&cli.StringFlag{Name: "migrate-to", Usage: "`DATASTORE` a migration moves the VM to (SIGUSR1, or --migrate-now)"},
			&cli.BoolFlag{Name: "migrate-now", Usage: "migrate to --migrate-to as soon as the VM runs, then end"},
		), nfsListenFlags()...),
		Action: restoreInstantAction,
	}
}

func restoreInstantAction(c *cli.Context) error {
	networks, cfg, err := networkAndConfigFlags(c)
	if err != nil {
		return err
	}
	if c.String("host") != "" && c.String("cluster") != "" {
		return errors.New("--host and --cluster exclude each other: the VM goes to a host, or to a cluster (which picks the host)")
	}
	allowList, err := allowFlag(c)
	if err != nil {
		return err
	}
	var allow []netip.Prefix
	if len(c.StringSlice("allow")) > 0 {
		allow = allowList.Prefixes()
	}
	if c.Bool("migrate-now") && c.String("migrate-to") == "" {
		return errors.New("--migrate-now needs --migrate-to DATASTORE (where the VM goes)")
	}
	repo, conn, _, err := openRepoAndVCenter(c)
	if err != nil {
		return err
	}
	defer repo.Close()
	defer conn.Close()
	p, err := repo.ResolvePoint(c.Context, c.String("vm"), c.String("point"))
	if err != nil {
		return err
	}
	nfsLn, mountLn, pmLn, pmUDP, err := nfsListeners(c)
	if err != nil {
		return err
	}
	// signals: from here on Ctrl-C ends the session cleanly
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGUSR1)
	defer signal.Stop(sigs)
	// the session's own channel from the start on: a SIGUSR1 sent while
	// the VM is being started migrates once it runs
	sigs2 := make(chan os.Signal, 4)
	signal.Notify(sigs2, os.Interrupt, syscall.SIGTERM, syscall.SIGUSR1)
	defer signal.Stop(sigs2)
	ctx, cancel := context.WithCancel(c.Context)
	defer cancel()
	go func() {
		for {
			select {
			case s := <-sigs:
				if s != syscall.SIGUSR1 {
					cancel() // Ctrl-C while starting: StartInstant undoes what it made
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	s, err := backupd.StartInstant(ctx, repo, conn, backupd.InstantRequest{
		Point: p, Config: cfg, PowerOn: c.Bool("power-on"), SessionDir: c.String("session-dir"),
		NFS: nfsLn, Mount: mountLn, Portmap: pmLn, PortmapUDP: pmUDP, RemoteHost: c.String("nfs-host"), Allow: allow,
		Create: vsphere.CreateSpec{Name: c.String("name"), Host: c.String("host"), Cluster: c.String("cluster"),
			ResourcePool: c.String("resource-pool"), Folder: c.String("folder"), Networks: networks, KeepIdentity: c.Bool("keep-identity")},
	}, slog.Default())
	if err != nil {
		switch {
		case errors.Is(err, backupd.ErrNoVMConfig):
			return fmt.Errorf("instant recovery of %s point %s: %w: this point was imported without one; give --vm-config FILE (the vm/config.json format, see docs/restore.md)", p.VM, p.ID, err)
		case errors.Is(err, vsphere.ErrNFSMount):
			return fmt.Errorf("instant recovery of %s point %s: %w\nthe ESXi host must reach %s on TCP 2049 and 111 (and UDP 111): check --nfs-host, the firewall between them, the host's NFS client and --allow (the host's storage address must be in it; the log names refused clients) (docs/restore.md, Instant recovery)", p.VM, p.ID, err, c.String("nfs-host"))
		case ctx.Err() != nil:
			return fmt.Errorf("instant recovery cancelled: %w", err)
		}
		return withRestoreAdvice(fmt.Errorf("instant recovery of %s point %s: %w", p.VM, p.ID, err))
	}
	state := "registered (powered off)"
	if c.Bool("power-on") {
		state = "running"
	}
	fmt.Printf("%s\t%s\t%s from %s point %s on datastore %s (host %s)\n", s.VM, s.MoRef, state, p.VM, p.ID, s.Datastore, s.Host)
	fmt.Printf("Ctrl-C stops the session (the VM and its writes are removed); kill -USR1 %d migrates it to %s\n", os.Getpid(), migrateTarget(c.String("migrate-to")))
	migrate := func() error {
		if err := s.Migrate(context.WithoutCancel(c.Context), c.String("migrate-to")); err != nil {
			return err
		}
		fmt.Printf("%s\tmigrated to %s; the session ended\n", s.VM, c.String("migrate-to"))
		return nil
	}
	if c.Bool("migrate-now") {
		return migrate()
	}
	for {
		select {
		case sig := <-sigs2:
			if sig == syscall.SIGUSR1 {
				if c.String("migrate-to") == "" {
					slog.Warn("SIGUSR1 ignored: no --migrate-to DATASTORE was given")
					continue
				}
				if err := migrate(); err != nil {
					slog.Error("migration failed; the VM still runs from the backup", "err", err)
					continue
				}
				return nil
			}
			if err := s.Stop(c.Context); err != nil {
				return fmt.Errorf("stop the instant recovery of %s: %w", s.VM, err)
			}
			fmt.Printf("%s\tstopped: the VM, datastore %s and the session's writes are removed\n", s.VM, s.Datastore)
			return nil
		case ferr := <-s.Failed():
			err := s.Stop(c.Context)
			return errors.Join(fmt.Errorf("the NFS export of the instant recovery failed: %w; the VM %s lost its disks and was removed", ferr, s.VM), err)
		}
	}
}

func migrateTarget(s string) string {
	if s == "" {
		return "(no --migrate-to given)"
	}
	return s
}

// networkAndConfigFlags reads --network OLD=NEW (repeatable) and
// --vm-config FILE of the commands that create a VM from a point.
func networkAndConfigFlags(c *cli.Context) (map[string]string, *vmconfig.Config, error) {
	networks := map[string]string{}
	for _, m := range c.StringSlice("network") {
		old, nw, ok := strings.Cut(m, "=")
		if !ok || old == "" || nw == "" {
			return nil, nil, fmt.Errorf("--network %q: want OLD=NEW (recorded network name = new network name)", m)
		}
		networks[old] = nw
	}
	cfg, err := restoreVMConfig(c) // restore_kvm.go
	if err != nil {
		return nil, nil, err
	}
	return networks, cfg, nil
}

// allowFlag reads --allow (nil when not given: the command's default).
func allowFlag(c *cli.Context) (*nfsserve.AllowList, error) {
	var list []string
	for _, v := range c.StringSlice("allow") {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				list = append(list, f)
			}
		}
	}
	p, err := nfsserve.ParseAllow(list)
	if err != nil {
		return nil, fmt.Errorf("--%w", err)
	}
	return nfsserve.NewAllowList(p), nil
}
