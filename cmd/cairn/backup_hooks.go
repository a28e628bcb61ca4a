package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/backupd"
)

// backupHookFlags are cairn backup's hook flags: commands run on this
// machine around each VM's snapshot and backup (docs/backup.md, "Hooks").
func backupHookFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "pre-snapshot", Usage: "run `CMD` before each VM's snapshot (freeze): an absolute program path and arguments split at spaces, no shell (repeatable)"},
		&cli.StringSliceFlag{Name: "post-snapshot", Usage: "run `CMD` right after each VM's snapshot exists or failed (thaw) (repeatable)"},
		&cli.StringSliceFlag{Name: "post-backup", Usage: "run `CMD` after each VM's backup, CAIRN_RESULT ok, warnings, failed, cancelled or skipped (repeatable)"},
		&cli.StringFlag{Name: "pre-snapshot-on-failure", Value: backupd.HookFail, Usage: "when a --pre-snapshot command fails: fail the VM's backup, skip the VM, or warn and go on"},
		&cli.DurationFlag{Name: "hook-timeout", Value: backupd.DefaultHookTimeout, Usage: "kill a hook command (its process group) after this long"},
	}
}

// backupHooks reads the hook flags (nil: none given).
func backupHooks(c *cli.Context) (*backupd.VMHooks, error) {
	policy, err := backupd.ParseHookPolicy(c.String("pre-snapshot-on-failure"))
	if err != nil {
		return nil, fmt.Errorf("--pre-snapshot-on-failure: %w", err)
	}
	if c.Duration("hook-timeout") <= 0 {
		return nil, fmt.Errorf("--hook-timeout %s: want a positive duration like 30s or 5m", c.Duration("hook-timeout"))
	}
	h := &backupd.VMHooks{}
	for _, f := range []struct {
		flag, point string
		dst         *[]backupd.Hook
	}{
		{"pre-snapshot", backupd.HookPreSnapshot, &h.PreSnapshot},
		{"post-snapshot", backupd.HookPostSnapshot, &h.PostSnapshot},
		{"post-backup", backupd.HookPostBackup, &h.PostBackup},
	} {
		for _, cmd := range c.StringSlice(f.flag) {
			argv := strings.Fields(cmd)
			if err := backupd.CheckHookProgram(argv); err != nil {
				return nil, fmt.Errorf("--%s %q: %w", f.flag, cmd, err)
			}
			*f.dst = append(*f.dst, backupd.Hook{Point: f.point, Argv: argv, Timeout: c.Duration("hook-timeout"), OnFailure: policy})
		}
	}
	if h.Empty() {
		return nil, nil
	}
	return h, nil
}
