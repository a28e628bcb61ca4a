package main

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/fusefs"
	"github.com/cairnbackup/cairn/fusefs/guest"
)

// mountCommands are `cairn mount` and `cairn umount`.
func mountCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:      "mount",
			Usage:     "show every recovery point as files (FUSE), in the foreground until Ctrl-C or SIGTERM",
			ArgsUsage: "MOUNTPOINT",
			Description: "Shows /MOUNTPOINT/<vm>/<point>/{info.json,disks/<disk>.img,disks/<disk>.vmdk}\n" +
				"and <vm>/latest. Read-only. New points appear and deleted points disappear\n" +
				"without remounting. Stop it with Ctrl-C, SIGTERM or `cairn umount MOUNTPOINT`.\n" +
				"See docs/mount.md.",
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "allow-other", Usage: "let other users read the mount (non-root needs user_allow_other in /etc/fuse.conf)"},
				&cli.DurationFlag{Name: "grace", Value: 10 * time.Second, Usage: "on stop, how long a busy (detached) mount keeps serving files that are still open"},
				&cli.BoolFlag{Name: "debug-fuse", Usage: "log every FUSE request"},
				&cli.IntFlag{Name: "max-open-filesystems", Value: guest.DefaultMaxOpen, Usage: "guest filesystems (under <point>/fs/) kept open at once; the least recently used beyond it is closed and reopened on next use (each holds up to ~36 MiB of caches)"},
				remoteFlag, limitRateFlag,
				&cli.StringFlag{Name: "cache-size", Value: "256MiB", Usage: "with --remote: memory for blocks read from the remote, at least 1M (e.g. 512M, 512MiB, 2GiB)"},
			},
			Action: runMount,
		},
		{
			Name:      "umount",
			Aliases:   []string{"unmount"},
			Usage:     "unmount a cairn mount (from another shell)",
			ArgsUsage: "MOUNTPOINT",
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "lazy", Usage: "detach the mount even when files are open there (umount -l)"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return &usageError{Command: "umount", Problem: "give one MOUNTPOINT"}
				}
				dir := c.Args().First()
				if err := fusefs.Unmount(dir, c.Bool("lazy")); err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "unmounted %s\n", dir)
				return nil
			},
		},
	}
}

func runMount(c *cli.Context) error {
	if c.IsSet("cache-size") && c.String("remote") == "" {
		// The local mount reads the repository through the page cache.
		return fmt.Errorf("mount: --cache-size sizes the cache of blocks read from a remote: add --remote NAME, or drop --cache-size")
	}
	if c.NArg() != 1 {
		return &usageError{Command: "mount", Problem: "give one MOUNTPOINT"}
	}
	dir := c.Args().First()
	// Check the mount point before opening the repository, so the most
	// likely mistake gets the clearest message.
	if err := fusefs.CheckMountPoint(dir); err != nil {
		return err
	}
	if err := refuseInsideRepo(c.String("repo"), dir, "mount point"); err != nil {
		return err
	}
	if c.Int("max-open-filesystems") < 1 {
		return fmt.Errorf("mount: --max-open-filesystems must be at least 1 (default %d)", guest.DefaultMaxOpen)
	}
	guests := guest.New(slog.Default(), c.Int("max-open-filesystems"))
	opts := fusefs.Options{
		Logger:         slog.Default(),
		FSProvider:     guests.FSProvider(),
		VolumeProvider: guests.VolumeProvider(),
		AllowOther:     c.Bool("allow-other"),
		Debug:          c.Bool("debug-fuse"),
	}
	if c.String("remote") != "" {
		return mountRemote(c, dir, opts)
	}
	repo, err := openRepo(c)
	if err != nil {
		return err
	}
	srv, err := fusefs.Mount(c.Context, repo, dir, opts)
	if err != nil {
		return err
	}
	slog.Info("mounted; stop with Ctrl-C or `cairn umount "+srv.Dir()+"`", "repo", repo.Dir(), "dir", srv.Dir())
	return serveMount(c, srv)
}

// serveMount waits until the mount is unmounted from outside or cairn is
// told to stop, and then unmounts it.
func serveMount(c *cli.Context, srv *fusefs.Server) error {
	select {
	case <-srv.Done():
		slog.Info("unmounted from outside", "dir", srv.Dir())
		return nil
	case <-c.Context.Done():
	}
	slog.Info("unmounting", "dir", srv.Dir())
	if err := srv.Unmount(true, c.Duration("grace")); err != nil {
		if errors.Is(err, fusefs.ErrNotMounted) {
			return nil
		}
		return fmt.Errorf("unmount %s: %w", srv.Dir(), err)
	}
	slog.Info("unmounted", "dir", srv.Dir())
	return nil
}
