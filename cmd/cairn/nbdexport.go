package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/backupd/nbdserve"
)

func nbdExportCommand() *cli.Command {
	return &cli.Command{
		Name:      "nbd-export",
		Usage:     "serve a disk of a recovery point over NBD (read-only unless --writable-overlay)",
		ArgsUsage: " ",
		Description: "Serves one disk of a point as an NBD export (fixed newstyle, structured replies,\n" +
			"base:allocation block status so holes stay holes, any number of clients) until\n" +
			"interrupted. qemu, qemu-img, nbdcopy, nbdinfo or nbdkit can then use the point\n" +
			"directly: qemu-system-x86_64 -drive file=nbd://127.0.0.1:10809,format=raw,snapshot=on\n" +
			"The point is never written: without --writable-overlay writes fail with EPERM; with\n" +
			"it they go to the overlay FILE (a sparse file of the disk's size, reusable).\n" +
			"Prints the export's URI on stdout once it accepts clients.",
		Flags: []cli.Flag{
			vmFlag(),
			pointFlag(),
			diskFlag(),
			&cli.StringFlag{Name: "listen", Usage: "TCP `ADDR` to listen on (default 127.0.0.1:10809 without --socket)"},
			&cli.StringFlag{Name: "socket", Usage: "unix socket `PATH` to listen on"},
			&cli.StringFlag{Name: "writable-overlay", Usage: "sparse `FILE` that takes the clients' writes"},
			&cli.StringFlag{Name: "name", Usage: "export name clients must ask for (default: any)"},
		},
		Action: nbdExportAction,
	}
}

// listenNBD opens the listener of an export: --socket or --listen.
func listenNBD(listen, socket string) (net.Listener, string, error) {
	if listen != "" && socket != "" {
		return nil, "", errors.New("give --listen or --socket, not both")
	}
	if socket != "" {
		if fi, err := os.Lstat(socket); err == nil && fi.Mode()&os.ModeSocket != 0 {
			// a stale socket of a killed export: only if nobody answers on it
			if c, err := net.Dial("unix", socket); err == nil {
				c.Close()
				return nil, "", fmt.Errorf("--socket %s: another server is listening there", socket)
			}
			os.Remove(socket)
		}
		ln, err := net.Listen("unix", socket)
		if err != nil {
			return nil, "", fmt.Errorf("--socket %s: %w", socket, err)
		}
		return ln, "nbd+unix:///?socket=" + socket, nil
	}
	if listen == "" {
		listen = "127.0.0.1:10809"
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, "", fmt.Errorf("--listen %s: the port is already in use (another export or NBD server?): choose another with --listen", listen)
		}
		return nil, "", fmt.Errorf("--listen %s: %w", listen, err)
	}
	return ln, "nbd://" + ln.Addr().String(), nil
}

func nbdExportAction(c *cli.Context) error {
	repo, p, dr, err := openLocalDisk(c)
	if err != nil {
		return fmt.Errorf("nbd-export: %w", err)
	}
	defer repo.Close()
	defer dr.Close()
	exp, err := nbdserve.NewExport(dr, nbdserve.Options{Name: c.String("name"), Overlay: c.String("writable-overlay"),
		OverlayBase: fmt.Sprintf("VM %s point %s disk %s", dr.Point().VM, dr.Point().ID, dr.Disk().Name), Logger: slog.Default()})
	if err != nil {
		return fmt.Errorf("nbd-export: %w", err)
	}
	defer exp.Close()
	ln, uri, err := listenNBD(c.String("listen"), c.String("socket"))
	if err != nil {
		return fmt.Errorf("nbd-export: %w", err)
	}
	if s := c.String("socket"); s != "" {
		defer os.Remove(s)
	}
	mode := "read-only"
	if exp.Writable() {
		mode = "writes to " + c.String("writable-overlay")
	}
	slog.Info("serving", "vm", p.VM, "point", p.ID, "disk", c.String("disk"), "uri", uri, "mode", mode)
	fmt.Println(uri)
	return exp.Serve(c.Context, ln)
}
