package main

import (
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/backupd/serve"
)

// serveCommands is `cairn serve`.
func serveCommands() []*cli.Command {
	return []*cli.Command{statusCommand(), triggerCommand(), notifyCommand(), auditCommand(), {
		Name:  "serve",
		Usage: "run the backup daemon: scheduled jobs, retention, the mount and the HTTP API",
		Description: "Reads --config (cairn.yaml, see docs/serve.md; `cairn config example` prints one),\n" +
			"mounts the repository, runs each job on its schedule (an interval: at start and then\n" +
			"every interval; or a cron expression) within the total and per-ESXi-host caps,\n" +
			"retries failed VMs, applies retention after each successful backup, verifies the\n" +
			"repository and the VMs against their source when configured, and serves /healthz,\n" +
			"/metrics and /api/v1/* on the config's listen address (cairn status and cairn jobs\n" +
			"find it through the repository's serve.json). Every request but /healthz needs the\n" +
			"bearer token serve writes to <repo>/api-token (mode 0600) on its first start;\n" +
			"a listen address beyond loopback needs api: tls_cert and tls_key (docs/security.md).\n" +
			"The same listener serves the web console at /ui/ (dashboard, VMs and points, guest\n" +
			"file browser with downloads, job history; log in with the token, docs/serve.md).\n" +
			"Named tokens with a role (viewer, operator, admin): cairn serve token; who did what:\n" +
			"cairn audit (<repo>/audit.log).\n" +
			"SIGHUP reloads the config (an invalid one is logged and the old one stays);\n" +
			"SIGINT or SIGTERM abort running jobs, release the mount and exit.",
		Subcommands: []*cli.Command{serveTokenCommand()}, // serve_token.go
		Flags: []cli.Flag{
			// required, checked in Action (a Required flag would be asked of `serve token` too)
			&cli.StringFlag{Name: "config", Usage: "`FILE` cairn.yaml (required)"},
			&cli.StringFlag{Name: "listen", Usage: "HTTP `ADDRESS`, overriding the config's listen"},
		},
		Action: func(c *cli.Context) error {
			file := c.String("config")
			if file == "" {
				return &usageError{Command: "serve", Problem: "missing --config"}
			}
			load := func() (*serve.Config, error) {
				cfg, err := serve.LoadConfig(file)
				if err == nil && c.String("listen") != "" {
					cfg.Listen = c.String("listen")
				}
				if err == nil {
					err = checkServeRemotes(cfg)
				}
				if err == nil {
					err = checkServeCredentials(cfg)
				}
				return cfg, err
			}
			cfg, err := load()
			if err != nil {
				return err
			}
			if err := refuseSecondServer(cfg.Repository); err != nil {
				return err
			}
			srv, err := serve.New(cfg, serve.Options{Logger: slog.Default(), Version: version, Remotes: openServeRemote,
				Ready: func() { sdNotify("READY=1") }})
			if err != nil {
				return err
			}
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for {
					select {
					case <-c.Context.Done():
						return
					case <-hup:
						ncfg, err := load()
						if err != nil {
							slog.Error("reload rejected; the old configuration stays in force", "error", err)
							srv.ReloadRejected(err)
							continue
						}
						slog.Info("reloading configuration", "config", file)
						srv.Reload(ncfg)
					}
				}
			}()
			return srv.Run(c.Context)
		},
	}}
}
