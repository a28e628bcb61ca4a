package test

import (
	"strings"
	"testing"
)

// TestCLIUsageErrorOneLine: through the built binary, a command line
// cairn cannot run prints one line on stderr (no help text on stdout or
// stderr) and exits 2. `cairn restore vm` without --vcenter printed the
// command's whole help (some 50 lines) before its error, and exited 1.
func TestCLIUsageErrorOneLine(t *testing.T) {
	for _, tc := range []struct{ args, want string }{
		{"restore vm --vm web", "cairn: restore vm: missing --vcenter (see cairn restore vm --help)"},
		{"points --bogus", "cairn: points: unknown flag --bogus (see cairn points --help)"},
		{"prune --keep-last abc", `cairn: prune: --keep-last "abc": give a whole number (see cairn prune --help)`},
		{"nosuchcmd", `cairn: unknown command "nosuchcmd" (see cairn --help)`},
	} {
		r := runCairn(t, []string{"CAIRN_REPO="}, strings.Fields(tc.args)...)
		if r.code != 2 || r.stdout != "" || r.stderr != tc.want+"\n" {
			t.Errorf("cairn %s: exit %d, stdout %q, stderr %q; want exit 2 and only %q", tc.args, r.code, r.stdout, r.stderr, tc.want)
		}
	}
}
