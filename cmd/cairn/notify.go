package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/backupd/notify"
	"github.com/cairnbackup/cairn/backupd/serve"
)

// notifyCommand is `cairn notify test`: one test message to every notify
// target of a cairn serve config, with the fix of each that fails.
func notifyCommand() *cli.Command {
	return &cli.Command{
		Name:  "notify",
		Usage: "notifications of cairn serve (webhooks, e-mail; docs/serve.md, Notifications)",
		Subcommands: []*cli.Command{{
			Name:  "test",
			Usage: "send a test message to every notify target of the config and report each",
			Description: "Reads the notify: section of --config (as cairn serve does: an invalid file is refused\n" +
				"with its line) and sends one test message (kind test, severity info) to each target\n" +
				"at once, without retries. Prints ok or FAILED per target with the fix (connection\n" +
				"refused, untrusted certificate: ca_file:, refused login: password_file:); exits 1\n" +
				"when any target failed.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "config", Value: "/etc/cairn/cairn.yaml", EnvVars: []string{"CAIRN_CONFIG"}, Usage: "`FILE` cairn.yaml"},
				&cli.StringFlag{Name: "target", Usage: "only the target called `NAME`"},
				&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "give up on a target after `DURATION`"},
				&cli.BoolFlag{Name: "json", Usage: "print the results as JSON"},
			},
			Action: func(c *cli.Context) error {
				cfg, err := serve.LoadConfig(c.String("config"))
				if err != nil {
					return err
				}
				if cfg.Notify == nil {
					return cli.Exit(fmt.Sprintf("%s has no notify: section: add one with targets (docs/serve.md, Notifications)", c.String("config")), 1)
				}
				targets := cfg.Notify.Targets
				if name := c.String("target"); name != "" {
					targets = nil
					var names []string
					for _, t := range cfg.Notify.Targets {
						names = append(names, t.Name)
						if t.Name == name {
							targets = append(targets, t)
						}
					}
					if targets == nil {
						return cli.Exit(fmt.Sprintf("no notify target %q (targets: %s)", name, strings.Join(names, ", ")), 2)
					}
				}
				res := notify.SendTest(c.Context, targets, "", c.Duration("timeout"))
				failed := 0
				type out struct {
					Target string `json:"target"`
					Type   string `json:"type"`
					OK     bool   `json:"ok"`
					Error  string `json:"error,omitempty"`
					Advice string `json:"advice,omitempty"`
				}
				var js []out
				for _, r := range res {
					o := out{Target: r.Target, Type: r.Type, OK: r.Err == nil, Advice: r.Advice}
					if r.Err != nil {
						failed++
						o.Error = r.Err.Error()
					}
					js = append(js, o)
					if c.Bool("json") {
						continue
					}
					if r.Err == nil {
						fmt.Printf("%-20s %-8s ok: test message delivered\n", r.Target, r.Type)
						continue
					}
					fmt.Printf("%-20s %-8s FAILED: %v\n", r.Target, r.Type, r.Err)
					if r.Advice != "" {
						fmt.Printf("%-20s %-8s   fix: %s\n", "", "", r.Advice)
					}
				}
				if c.Bool("json") {
					enc := json.NewEncoder(os.Stdout)
					enc.SetIndent("", "  ")
					if err := enc.Encode(js); err != nil {
						return err
					}
				}
				if failed > 0 {
					return afterJSON(c.Bool("json"), cli.Exit(fmt.Sprintf("notify test: %d of %d targets failed", failed, len(res)), 1))
				}
				return nil
			},
		}},
	}
}

// printNotifyStatus is cairn status's table of notify targets: messages
// sent, given up and dropped, the last success and the last failure.
func printNotifyStatus(w io.Writer, targets []notify.TargetStatus) {
	if len(targets) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NOTIFY TARGET\tTYPE\tSENT\tFAILED\tDROPPED\tLAST OK\tLAST FAILURE")
	for _, t := range targets {
		last := "-"
		if t.LastError != "" {
			last = fmt.Sprintf("%s (%s): %s", when(t.LastErrorTime), t.LastErrorKind, t.LastError)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\n", t.Name, t.Type, t.Sent, t.Failed, t.Dropped, when(t.LastOK), last)
	}
	tw.Flush()
}
