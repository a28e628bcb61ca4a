package test

import (
	"encoding/json"
	"path/filepath"
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

// TestCLIJSONFailure: every command given --json prints one JSON document
// on stdout also when it fails: {"error": ..., "exit_code": N}, with the
// same exit status (several printed nothing on stdout, only the error line
// on stderr, leaving a script with nothing to parse).
func TestCLIJSONFailure(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repo, "init")
	missing := filepath.Join(dir, "none")
	for _, args := range [][]string{
		{"--repo", missing, "points", "--json"},
		{"--repo", repo, "partitions", "--vm", "nope", "--json"},
		{"--repo", missing, "jobs", "--json"},
		{"--repo", missing, "remote", "list", "--json"},
		{"--repo", repo, "history", "--vm", "nope", "--json"},
		{"--repo", missing, "search", "--json", "passwd"},
		{"--repo", missing, "verify", "--json"},
		{"--repo", repo, "files", "--vm", "nope", "--disk", "d0", "--json"},
		{"--repo", missing, "prune", "--keep-last", "1", "--json"},
		{"--repo", repo, "forget", "--vm", "nope", "--point", "1", "--json"},
		{"--repo", repo, "history", "--json"}, // a missing flag
		{"--repo", repo, "restore", "vm", "--json"},
		{"--repo", repo, "restore", "disk", "--vcenter", "https://127.0.0.1:1/sdk", "--vm", "x", "--json"},
		{"--repo", repo, "backup", "--vcenter", "https://127.0.0.1:1/sdk", "--insecure", "--vm", "x", "--json"},
	} {
		r := runCairn(t, []string{"CAIRN_REPO=", "CAIRN_VC_USER=u", "CAIRN_VC_PASSWORD=p"}, args...)
		var out map[string]any
		err := json.Unmarshal([]byte(r.stdout), &out)
		if r.code == 0 || err != nil || out["error"] == nil || out["exit_code"] != float64(r.code) {
			t.Errorf("cairn %s: exit %d, stdout %q (%v): want a JSON error object and a non-zero exit; stderr %s",
				strings.Join(args, " "), r.code, r.stdout, err, r.stderr)
		}
	}
}
