package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/backupd/serve"
)

// accessRepoFlag names a cairn serve config whose repository the token
// and audit commands use (instead of --repo).
var accessRepoFlag = &cli.StringFlag{Name: "config", EnvVars: []string{"CAIRN_CONFIG"}, Usage: "`FILE` cairn.yaml whose repository to use (instead of --repo)"}

// accessRepoDir is the repository of --config, or --repo.
func accessRepoDir(c *cli.Context) (string, error) {
	if f := c.String("config"); f != "" {
		cfg, err := serve.LoadConfig(f)
		if err != nil {
			return "", err
		}
		return cfg.Repository, nil
	}
	if d := c.String("repo"); d != "" {
		return d, nil
	}
	return "", &usageError{Command: cmdName(c), Problem: "which repository? give --repo DIR (before the command) or --config FILE (cairn serve's config)"}
}

// nameAndFlags returns the one NAME argument of c, taking flags written
// after it (`token add NAME --role viewer`: urfave/cli stops parsing
// flags at the first argument).
func nameAndFlags(c *cli.Context, usage string) (string, error) {
	bad := &usageError{Command: cmdName(c), Problem: usage}
	if c.NArg() == 0 {
		return "", bad
	}
	set := flag.NewFlagSet(c.Command.Name, flag.ContinueOnError)
	set.SetOutput(io.Discard)
	for _, f := range c.Command.Flags {
		if err := f.Apply(set); err != nil {
			return "", err
		}
	}
	if err := set.Parse(c.Args().Slice()[1:]); err != nil {
		return "", &usageError{Command: cmdName(c), Problem: err.Error()}
	}
	if set.NArg() > 0 {
		return "", bad
	}
	var err error
	set.Visit(func(f *flag.Flag) {
		if e := c.Set(f.Name, f.Value.String()); e != nil && err == nil {
			err = e
		}
	})
	return c.Args().First(), err
}

func cmdName(c *cli.Context) string { return strings.TrimPrefix(c.Command.HelpName, "cairn ") }

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04")
}

// serveTokenCommand is `cairn serve token add|list|revoke`.
func serveTokenCommand() *cli.Command {
	return &cli.Command{
		Name:  "token",
		Usage: "named API tokens with roles: add, list, revoke (docs/security.md, Roles)",
		Description: "cairn serve's API and web console take a bearer token. <repo>/api-token is the\n" +
			"admin token serve writes on its first start (cairn status/trigger/jobs read it);\n" +
			"give people their own named tokens with the least role they need:\n" +
			"  viewer    status, points, jobs, metrics, guest file listings (not file contents)\n" +
			"  operator  viewer + start backups, verify, download guest files\n" +
			"  admin     everything: restore whole VMs (new, replace, in place)\n" +
			"The repository keeps only each secret's SHA-256 (api-tokens.json, mode 0600); a\n" +
			"running cairn serve sees added and revoked tokens at its next request. Every\n" +
			"mutating request, download and refused token is written to <repo>/audit.log\n" +
			"(cairn audit).",
		Subcommands: []*cli.Command{{
			Name:      "add",
			Usage:     "make a token NAME with a role and print its secret (shown only once)",
			ArgsUsage: "NAME",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "role", Usage: "`ROLE`: viewer, operator or admin (required)"},
				&cli.StringFlag{Name: "expires", Usage: "lifetime `TTL`: days (90d), weeks (2w), hours (12h); default never"},
				accessRepoFlag,
				&cli.BoolFlag{Name: "json", Usage: "print name, role, expiry and secret as JSON"},
			},
			Action: func(c *cli.Context) error {
				name, err := nameAndFlags(c, "give one token name: cairn serve token add NAME --role viewer|operator|admin")
				if err != nil {
					return err
				}
				if c.String("role") == "" {
					return &usageError{Command: cmdName(c), Problem: "missing --role (viewer, operator or admin)"}
				}
				role, err := serve.ParseRole(c.String("role"))
				if err != nil {
					return &usageError{Command: cmdName(c), Problem: "--role: " + err.Error()}
				}
				ttl, err := serve.ParseTTL(c.String("expires"))
				if err != nil {
					return &usageError{Command: cmdName(c), Problem: "--expires: " + err.Error()}
				}
				dir, err := accessRepoDir(c)
				if err != nil {
					return err
				}
				now := time.Now()
				secret, err := serve.AddToken(dir, name, role, ttl, now)
				if err != nil {
					return err
				}
				var exp time.Time
				if ttl > 0 {
					exp = now.UTC().Truncate(time.Second).Add(ttl)
				}
				expiry := "never"
				if !exp.IsZero() {
					expiry = fmtTime(exp)
				}
				if c.Bool("json") {
					return json.NewEncoder(stdout()).Encode(map[string]any{"name": name, "role": role, "expires": exp, "token": secret})
				}
				fmt.Fprintln(stdout(), secret)
				fmt.Fprintf(c.App.ErrWriter, "token %q (%s, expires %s): the line above is its secret, shown only now;\n"+
					"send it as \"Authorization: Bearer TOKEN\", or log in to the web console with it\n", name, role, expiry)
				return nil
			},
		}, {
			Name:  "list",
			Usage: "list the named tokens: name, role, created, expires, last used",
			Flags: []cli.Flag{accessRepoFlag, &cli.BoolFlag{Name: "json", Usage: "print JSON"}},
			Action: func(c *cli.Context) error {
				dir, err := accessRepoDir(c)
				if err != nil {
					return err
				}
				toks, err := serve.ListTokens(dir)
				if err != nil {
					return err
				}
				if c.Bool("json") {
					if toks == nil {
						toks = []serve.Token{}
					}
					for i := range toks {
						toks[i].SHA256 = ""
					}
					return json.NewEncoder(stdout()).Encode(toks)
				}
				tw := tabwriter.NewWriter(stdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tROLE\tCREATED\tEXPIRES\tLAST USED")
				fmt.Fprintf(tw, "%s\tadmin\t-\tnever\t-\n", serve.LegacyTokenName)
				now := time.Now()
				for _, t := range toks {
					exp := fmtTime(t.Expires)
					if t.Expires.IsZero() {
						exp = "never"
					} else if t.Expired(now) {
						exp += " (expired)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Name, t.Role, fmtTime(t.Created), exp, fmtTime(t.LastUsed))
				}
				return tw.Flush()
			},
		}, {
			Name:      "revoke",
			Usage:     "remove the token NAME (a running cairn serve refuses it at once)",
			ArgsUsage: "NAME",
			Flags:     []cli.Flag{accessRepoFlag},
			Action: func(c *cli.Context) error {
				name, err := nameAndFlags(c, "give one token name: cairn serve token revoke NAME (cairn serve token list shows them)")
				if err != nil {
					return err
				}
				dir, err := accessRepoDir(c)
				if err != nil {
					return err
				}
				if err := serve.RevokeToken(dir, name); err != nil {
					return err
				}
				fmt.Fprintf(stdout(), "token %q revoked\n", name)
				return nil
			},
		}},
	}
}

// auditCommand is `cairn audit`: the audit log of cairn serve.
func auditCommand() *cli.Command {
	return &cli.Command{
		Name:  "audit",
		Usage: "who did what through cairn serve's API: the repository's audit.log",
		Description: "Lists <repo>/audit.log (and its rotated files): every mutating API request\n" +
			"(backup, verify, restore, download ticket), every guest file download and every\n" +
			"refused token or role, with time, token name, role, remote address, route, target\n" +
			"and HTTP status. Secrets are never written (docs/security.md, Audit log).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "since", Usage: "only events after `WHEN`: a duration back (24h, 7d) or a time (2026-01-02T15:04:05Z)"},
			accessRepoFlag,
			&cli.BoolFlag{Name: "json", Usage: "print JSON lines, as stored"},
		},
		Action: func(c *cli.Context) error {
			var since time.Time
			if v := c.String("since"); v != "" {
				if t, err := time.Parse(time.RFC3339, v); err == nil {
					since = t
				} else if d, err := serve.ParseTTL(v); err == nil && d > 0 {
					since = time.Now().Add(-d)
				} else {
					return &usageError{Command: cmdName(c), Problem: fmt.Sprintf("--since %q: give a duration back (24h, 7d) or a time (2026-01-02T15:04:05Z)", v)}
				}
			}
			dir, err := accessRepoDir(c)
			if err != nil {
				return err
			}
			events, skipped, err := serve.ReadAudit(dir, since)
			if err != nil {
				return err
			}
			if skipped > 0 {
				fmt.Fprintf(c.App.ErrWriter, "%d damaged line(s) of the audit log skipped\n", skipped)
			}
			if c.Bool("json") {
				enc := json.NewEncoder(stdout())
				for _, e := range events {
					if err := enc.Encode(e); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(stdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tKIND\tTOKEN\tROLE\tREMOTE\tREQUEST\tTARGET\tSTATUS")
			for _, e := range events {
				target := e.VM
				for _, p := range []string{e.Point, e.FS, e.Path} {
					if p != "" {
						target += " " + p
					}
				}
				if e.Job != "" {
					target += " job " + e.Job
				}
				if e.Detail != "" {
					target += " (" + e.Detail + ")"
				}
				tok, role := e.Token, e.Role
				if tok == "" {
					tok = "-"
				}
				if role == "" {
					role = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", e.Time.Local().Format("2006-01-02 15:04:05"), e.Kind, tok, role, e.Remote,
					e.Method+" "+e.Route, target, e.Status)
			}
			return tw.Flush()
		},
	}
}
