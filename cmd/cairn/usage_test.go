package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestUsageErrorsOneLine: a command line cairn cannot run (a missing
// required flag, an unknown flag or command, a bad flag value) fails with
// one line naming the command, the problem and its --help, exit status 2,
// and prints nothing else (urfave/cli printed the command's whole help
// before its error, and exited 1 or 3).
func TestUsageErrorsOneLine(t *testing.T) {
	for _, tc := range []struct{ args, want string }{
		{"restore vm", "restore vm: missing --vcenter and --vm (see cairn restore vm --help)"},
		{"restore vm --vcenter https://vc/sdk", "restore vm: missing --vm (see cairn restore vm --help)"},
		{"restore disk --vcenter https://vc/sdk --vm web", "restore disk: missing"},
		{"backup", "backup: missing --vcenter"},
		{"points --bogus", "points: unknown flag --bogus (see cairn points --help)"},
		{"prune --keep-last abc", `prune: --keep-last "abc": give a whole number (see cairn prune --help)`},
		{"prune --keep-last -1", "prune: --keep-last -1: give 0 or more (see cairn prune --help)"},
		{"restore vm --vcenter x --vm a --nbd-stall-timeout soon", `restore vm: --nbd-stall-timeout "soon": give a duration like 90s`},
		{"backup --vcenter", "backup: --vcenter needs a value (see cairn backup --help)"},
		{"points --json=maybe", "points: --json=maybe: give --json alone, or =true or =false"},
		{"nosuchcmd", `unknown command "nosuchcmd" (see cairn --help)`},
		{"mount", "mount: give one MOUNTPOINT (see cairn mount --help)"},
		{"umount a b", "umount: give one MOUNTPOINT (see cairn umount --help)"},
		{"restore nosuch", `restore: unknown command "nosuch" (see cairn restore --help)`},
		{"--bogus points", "unknown flag --bogus (see cairn --help)"},
		{"--log-level loud points", `--log-level "loud": use debug, info, warn or error`},
	} {
		app := newApp()
		var out bytes.Buffer
		app.Writer, app.ErrWriter = &out, &out
		err := app.Run(append([]string{"cairn"}, strings.Fields(tc.args)...))
		if err == nil {
			t.Errorf("cairn %s: no error", tc.args)
			continue
		}
		if !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("cairn %s: %q, want one line starting %q", tc.args, err, tc.want)
		}
		var ec cli.ExitCoder
		if !errors.As(err, &ec) || ec.ExitCode() != exitUsage {
			t.Errorf("cairn %s: exit status not %d: %v", tc.args, exitUsage, err)
		}
		if out.Len() > 0 {
			t.Errorf("cairn %s printed more than its error:\n%s", tc.args, out.String())
		}
	}
}

// TestUsageHelpStays: --help and a bare command group still print help.
func TestUsageHelpStays(t *testing.T) {
	for _, args := range []string{"restore vm --help", "restore", "", "help", "help restore vm"} {
		app := newApp()
		var out bytes.Buffer
		app.Writer, app.ErrWriter = &out, &out
		if err := app.Run(append([]string{"cairn"}, strings.Fields(args)...)); err != nil || !strings.Contains(out.String(), "USAGE:") {
			t.Errorf("cairn %s: %v, printed %q", args, err, out.String())
		}
	}
}
