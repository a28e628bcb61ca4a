// Command cairn-lab runs a simulated vCenter whose VMs keep changing
// files, to try cairn on (`cairn lab` runs it). It is a separate program
// so that cairn itself does not carry govmomi's vCenter simulator: its
// package initialisers alone cost every cairn command about 10 ms.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/cairnbackup/cairn/internal/lab"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newApp().RunContext(ctx, os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "cairn lab:", err)
		os.Exit(1)
	}
}

func newApp() *cli.App {
	app := &cli.App{
		Name:      "cairn lab",
		HelpName:  "cairn lab",
		Usage:     "run a simulated vCenter with VMs whose guests keep writing files, to try cairn on",
		ArgsUsage: " ",
		Description: "Starts an in-process vCenter simulator (two ESXi hosts, one datastore) with --vms VMs\n" +
			"named lab-vm-1, lab-vm-2, ... in the VM folder \"lab\", tagged backup:daily and spread over\n" +
			"the hosts. Their disks hold a GPT (or MBR) and a FAT32 filesystem with a\n" +
			"small OS-like tree, and a guest writer changes, adds and deletes files every --interval,\n" +
			"journaling each change in DIR/journal/<vm>.jsonl. Writes DIR/credentials and a ready\n" +
			"DIR/cairn.yaml for `cairn serve`, prints how to connect, and runs until Ctrl-C.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Value: "./lab", Usage: "`DIR` for the lab's disks, journal, credentials and cairn.yaml"},
			&cli.IntFlag{Name: "vms", Value: lab.DefaultVMs, Usage: "number of VMs"},
			&cli.DurationFlag{Name: "interval", Value: lab.DefaultInterval, Usage: "how often the guests change files"},
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:0", Usage: "vCenter `ADDR` (port 0: any free port)"},
			&cli.IntFlag{Name: "disk-size-mib", Value: lab.DefaultDiskSize >> 20, Usage: "size of each VM's system disk in MiB"},
			&cli.StringFlag{Name: "schedule", Value: lab.DefaultSchedule, Usage: "backup schedule written to cairn.yaml"},
			&cli.StringFlag{Name: "serve-listen", Value: lab.DefaultServeListen, Usage: "cairn serve HTTP address written to cairn.yaml"},
		},
		Action:          runLab,
		HideHelpCommand: true,
		ExitErrHandler:  func(*cli.Context, error) {},
	}
	app.Flags = append(app.Flags, &cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"})
	app.Before = func(c *cli.Context) error {
		var level slog.Level
		if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
			return fmt.Errorf("--log-level %q: use debug, info, warn or error", c.String("log-level"))
		}
		opts := &slog.HandlerOptions{Level: level}
		if term.IsTerminal(int(os.Stderr.Fd())) {
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, opts)))
		} else {
			slog.SetDefault(slog.New(slog.NewJSONHandler(os.Stderr, opts)))
		}
		return nil
	}
	return app
}

func runLab(c *cli.Context) error {
	if c.Args().Len() > 0 {
		return fmt.Errorf("lab takes no arguments, got %q", c.Args().Slice())
	}
	if n := c.Int("vms"); n < 1 {
		return fmt.Errorf("--vms %d: want at least 1", n)
	}
	if n := c.Int("disk-size-mib"); n < lab.MinDiskSize>>20 {
		return fmt.Errorf("--disk-size-mib %d: want at least %d", n, lab.MinDiskSize>>20)
	}
	l, err := lab.Start(c.Context, lab.Options{
		Dir:         c.String("dir"),
		VMs:         c.Int("vms"),
		DiskSize:    int64(c.Int("disk-size-mib")) << 20,
		Interval:    c.Duration("interval"),
		Listen:      c.String("listen"),
		ServeListen: c.String("serve-listen"),
		Schedule:    c.String("schedule"),
		Logger:      slog.Default().With("component", "lab"),
	})
	if err != nil {
		if c.Context.Err() != nil && errors.Is(err, context.Canceled) {
			return nil // Ctrl-C while starting
		}
		return err
	}
	printLab(c.App.Writer, l)
	<-c.Context.Done()
	slog.Info("lab stopping")
	if err := l.Close(); err != nil {
		return fmt.Errorf("stop lab: %w", err)
	}
	slog.Info("lab stopped")
	return nil
}

// printLab tells the user how to reach the lab.
func printLab(w io.Writer, l *lab.Lab) {
	repo := filepath.Join(l.Dir, "repo")
	fmt.Fprintf(w, "cairn lab is running (Ctrl-C to stop).\n\n")
	fmt.Fprintf(w, "vCenter:      %s\n", l.URL)
	fmt.Fprintf(w, "user:         %s\n", l.User)
	fmt.Fprintf(w, "credentials:  %s\n", l.CredentialsFile)
	fmt.Fprintf(w, "thumbprint:   %s\n", l.Thumbprint)
	fmt.Fprintf(w, "config:       %s\n", l.ConfigFile)
	fmt.Fprintf(w, "VMs:         ")
	for _, vm := range l.VMs {
		fmt.Fprintf(w, " %s", vm.Name)
	}
	fmt.Fprintf(w, "\njournal:      %s\n\n", filepath.Join(l.Dir, "journal"))
	fmt.Fprintf(w, "Try:\n")
	fmt.Fprintf(w, "  GOVC_URL=%s GOVC_USERNAME='%s' GOVC_PASSWORD=\"$(sed -n 2p %s)\" GOVC_INSECURE=1 govc ls /DC0/vm/%s\n",
		l.URL, l.User, l.CredentialsFile, lab.Folder)
	fmt.Fprintf(w, "  cairn --repo %s init\n", repo)
	fmt.Fprintf(w, "  cairn --repo %s backup --vcenter %s --credentials %s --thumbprint %s --vm %s1 --transport file\n",
		repo, l.URL, l.CredentialsFile, l.Thumbprint, lab.VMPrefix)
	fmt.Fprintf(w, "  cairn --repo %s points\n", repo)
	fmt.Fprintf(w, "  cairn --repo %s restore vm --vcenter %s --credentials %s --thumbprint %s --vm %s1 --name %s1-copy\n",
		repo, l.URL, l.CredentialsFile, l.Thumbprint, lab.VMPrefix, lab.VMPrefix)
	fmt.Fprintf(w, "      (over an existing VM, --replace or --in-place: add --transport nbd --nbd-command 'nbdkit -t 1 -U {socket} -f file {disk_local_path}')\n")
	fmt.Fprintf(w, "  cairn serve --config %s     (backs up every VM tagged %s)\n", l.ConfigFile, lab.Tag)
	fmt.Fprintf(w, "  cairn --repo %s status\n", repo)
}
