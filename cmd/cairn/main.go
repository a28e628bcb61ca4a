// Command cairn is an agentless backup appliance for VMware vSphere: it
// keeps every backup as a recovery point and shows every point as plain
// files through a FUSE mount.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/cairnbackup/cairn/blockmap"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := newApp()
	if err := app.RunContext(ctx, rewriteArgs(app, hoistGlobalFlags(app, os.Args))); err != nil {
		fmt.Fprintln(os.Stderr, "cairn:", errorLine(err))
		if a := adviceFor(err); a != "" {
			fmt.Fprintln(os.Stderr, "cairn:", a)
		}
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			os.Exit(ec.ExitCode())
		}
		os.Exit(1)
	}
}

func newApp() *cli.App {
	app := &cli.App{
		Name:    "cairn",
		Usage:   "agentless VMware vSphere backup; every recovery point is a plain file",
		Version: version,
		Description: "cairn stores backups of virtual machines as recovery points in a repository\n" +
			"(sparse delta images indexed in Badger) and shows every point through a FUSE\n" +
			"mount as raw disk images and guest files. See README.md and docs/.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "repo", Usage: "repository `DIR`", EnvVars: []string{"CAIRN_REPO"}},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
		},
		Before: func(c *cli.Context) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
				return &usageError{Problem: fmt.Sprintf("--log-level %q: use debug, info, warn or error", c.String("log-level"))}
			}
			slog.SetDefault(newLogger(level))
			return nil
		},
		HideHelpCommand: true,
		ExitErrHandler:  func(*cli.Context, error) {},
	}
	app.Commands = append(app.Commands, repoCommands()...)
	app.Commands = append(app.Commands, extraCommands()...)
	app.Commands = append(app.Commands, remoteCommands()...)
	refuseNegativeFlags(app.Commands)
	oneLineUsageErrors(app)
	jsonFailures(app.Commands, stdout)
	return app
}

// newLogger logs text to a terminal and JSON otherwise, on stderr.
func newLogger(level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if term.IsTerminal(int(os.Stderr.Fd())) {
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts))
}

// openRepo opens the repository named by --repo / $CAIRN_REPO.
func openRepo(c *cli.Context) (*blockmap.Repo, error) {
	return blockmap.Open(c.Context, c.String("repo"), blockmap.Options{Logger: slog.Default()})
}

// rewriteArgs turns `cairn ... verify --against-source FLAGS` into
// `cairn ... verify-source FLAGS`: verify against the VM itself takes the
// vCenter flags of verify-source. The command is the first word after the
// global flags (so `--repo verify` names a directory, not the command);
// --against-source=false keeps the repository verify.
func rewriteArgs(app *cli.App, args []string) []string {
	takesValue := map[string]bool{} // global flags whose value is the next argument
	for _, f := range app.Flags {
		if _, isBool := f.(*cli.BoolFlag); !isBool {
			for _, n := range f.Names() {
				takesValue[n] = true
			}
		}
	}
	cmd := -1
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") {
			if a == "verify" {
				cmd = i
			}
			break
		}
		if name := strings.TrimLeft(a, "-"); !strings.Contains(name, "=") && takesValue[name] {
			i++ // its value
		}
	}
	if cmd < 0 {
		return args
	}
	out := append([]string{}, args[:cmd]...)
	verb := "verify"
	var rest []string
	for i := cmd + 1; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && name == "against-source" {
			if on, err := strconv.ParseBool(val); !hasVal || (err == nil && on) {
				verb = "verify-source"
			} else if err != nil {
				rest = append(rest, a) // let the flag parser name the bad value
			}
			continue
		}
		rest = append(rest, a)
	}
	out = append(out, verb)
	return append(out, rest...)
}
