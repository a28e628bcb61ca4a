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
	return []*cli.Command{{
		Name:  "serve",
		Usage: "run the backup daemon: scheduled jobs, retention, the mount and the HTTP API",
		Description: "Reads --config (cairn.yaml, see docs/serve.md), mounts the repository, runs every\n" +
			"job at start and then on its interval, applies retention after each successful\n" +
			"backup and serves /healthz, /metrics and /api/v1/* on the config's listen address.\n" +
			"SIGHUP reloads the config (an invalid one is logged and the old one stays);\n" +
			"SIGINT or SIGTERM abort running jobs, release the mount and exit.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Required: true, Usage: "`FILE` cairn.yaml"},
			&cli.StringFlag{Name: "listen", Usage: "HTTP `ADDRESS`, overriding the config's listen"},
		},
		Action: func(c *cli.Context) error {
			file := c.String("config")
			load := func() (*serve.Config, error) {
				cfg, err := serve.LoadConfig(file)
				if err == nil && c.String("listen") != "" {
					cfg.Listen = c.String("listen")
				}
				return cfg, err
			}
			cfg, err := load()
			if err != nil {
				return err
			}
			srv, err := serve.New(cfg, slog.Default())
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
