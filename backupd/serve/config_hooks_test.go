package serve

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd"
)

// TestConfigHooks: hooks: parses each hook point (a list or one mapping)
// with its timeout (default 5m) and policy (default fail); a relative,
// missing or non-executable program, a command given as a string, a bad
// timeout or policy, on_failure on a post hook and an unknown hook point
// are refused with the line and the fix.
func TestConfigHooks(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "db-freeze")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	with := func(hooks string) string {
		return strings.Replace(goodConfig, "    quiesce: auto", "    quiesce: auto\n    hooks:\n"+hooks, 1)
	}
	cfg, err := ParseConfig("cairn.yaml", []byte(with(
		"      pre_snapshot: [{command: ["+prog+", --host, db1], timeout: 90s, on_failure: skip}]\n"+
			"      post_snapshot: {command: ["+prog+", --thaw]}\n")))
	if err != nil {
		t.Fatal(err)
	}
	h := cfg.Jobs[0].Hooks
	if h == nil || len(h.PreSnapshot) != 1 || len(h.PostSnapshot) != 1 || len(h.PreJob)+len(h.PostJob)+len(h.PostBackup) != 0 {
		t.Fatalf("hooks %+v", h)
	}
	pre, post := h.PreSnapshot[0], h.PostSnapshot[0]
	if pre.Point != backupd.HookPreSnapshot || strings.Join(pre.Argv, " ") != prog+" --host db1" || pre.Timeout != 90*time.Second || pre.OnFailure != backupd.HookSkip {
		t.Errorf("pre_snapshot %+v", pre)
	}
	if post.Point != backupd.HookPostSnapshot || post.Timeout != backupd.DefaultHookTimeout || post.OnFailure != backupd.HookFail {
		t.Errorf("post_snapshot %+v", post)
	}
	for _, tc := range []struct{ hooks, reason string }{
		{"      pre_job: [{command: [db-freeze]}]", "give its absolute path"},
		{"      pre_job: [{command: [" + filepath.Join(dir, "missing") + "]}]", "no such file or directory"},
		{"      pre_job: [{command: [" + plain + "]}]", "is not executable (chmod +x it)"},
		{"      pre_job: [{command: \"" + prog + " --all\"}]", "want a list [PROGRAM, ARG...] (no shell runs it"},
		{"      pre_job: [{command: []}]", "command is empty"},
		{"      pre_job: [{timeout: 1m}]", "missing \"command\""},
		{"      pre_job: [{command: [" + prog + "], timeout: soon}]", "timeout \"soon\": want a duration"},
		{"      pre_job: [{command: [" + prog + "], on_failure: ignore}]", "on_failure \"ignore\": want fail, skip or warn"},
		{"      post_backup: [{command: [" + prog + "], on_failure: skip}]", "unknown key \"on_failure\""},
		{"      pre_freeze: [{command: [" + prog + "]}]", "unknown key \"pre_freeze\""},
	} {
		_, err := ParseConfig("cairn.yaml", []byte(with(tc.hooks)))
		if err == nil || !strings.Contains(err.Error(), tc.reason) || !strings.Contains(err.Error(), "cairn.yaml:21:") {
			t.Errorf("%s: %v, want line 21 and %q", tc.hooks, err, tc.reason)
		}
	}
}
