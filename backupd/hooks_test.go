package backupd

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeScript writes an executable shell script into a test directory.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRunHookTimeoutKillsGroup: a hook that starts a child sleeping far
// beyond the timeout is stopped at its timeout, and the child (same
// process group, not the hook's own process) is gone too.
func TestRunHookTimeoutKillsGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	sh := writeScript(t, dir, "hang", "sleep 300 &\necho $! > "+pidFile+"\necho frozen\nwait\n")
	r := RunHook(context.Background(), Hook{Point: HookPreSnapshot, Argv: []string{sh}, Timeout: 500 * time.Millisecond}, HookEnv{VM: "vm1"}, quiet)
	if !r.Failed() || !strings.Contains(r.Error, "timed out") || r.LastLine() != "frozen" {
		t.Fatalf("result %+v", r)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	// the child was SIGKILLed: once reaped by init it no longer exists
	deadline := time.Now().Add(10 * time.Second)
	for running(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the hook's child %d (sleep 300) still runs after the timeout", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRunHookCancelKillsGroup: a cancelled context (a stopping serve)
// kills a pre hook's whole group.
func TestRunHookCancelKillsGroup(t *testing.T) {
	dir := t.TempDir()
	sh := writeScript(t, dir, "hang", "sleep 300\n")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	r := RunHook(ctx, Hook{Point: HookPreJob, Argv: []string{sh}, Timeout: time.Hour}, HookEnv{}, quiet)
	if !r.Failed() || !strings.HasPrefix(r.Error, "stopped") {
		t.Fatalf("result %+v", r)
	}
}

// TestRunHookOutputBounded: a hook writing 1 MiB to stdout and stderr
// keeps the last HookOutputMax bytes, the end intact.
func TestRunHookOutputBounded(t *testing.T) {
	dir := t.TempDir()
	sh := writeScript(t, dir, "loud", "head -c 1048576 /dev/zero | tr '\\0' x\necho\necho to-stderr >&2\necho last line\nexit 3\n")
	r := RunHook(context.Background(), Hook{Point: HookPostBackup, Argv: []string{sh}}, HookEnv{}, quiet)
	if len(r.Output) != HookOutputMax || !r.Truncated || !strings.HasSuffix(r.Output, "to-stderr\nlast line\n") {
		t.Fatalf("output %d bytes, truncated %v, ends %q", len(r.Output), r.Truncated, r.Output[max(0, len(r.Output)-40):])
	}
	if r.ExitCode != 3 || r.Error != "exit status 3" || r.Summary() != "post_backup hook "+sh+": exit status 3: last line" {
		t.Fatalf("exit %d error %q summary %q", r.ExitCode, r.Error, r.Summary())
	}
}

// TestRunHookEnv: a hook sees the CAIRN_* variables of its point and none
// of cairn's credentials (vCenter variables, anything named like a
// secret), nor a CAIRN_POINT inherited from cairn's own environment.
func TestRunHookEnv(t *testing.T) {
	t.Setenv("CAIRN_VC_PASSWORD", "vc-secret")
	t.Setenv("CAIRN_VC_USER", "administrator@vsphere.local")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
	t.Setenv("CAIRN_API_TOKEN", "api-secret")
	t.Setenv("CAIRN_POINT", "inherited")
	t.Setenv("HOOKTEST_PLAIN", "kept")
	dir := t.TempDir()
	sh := writeScript(t, dir, "env", "env\n")
	r := RunHook(context.Background(), Hook{Point: HookPostBackup, Argv: []string{sh}},
		HookEnv{Job: "nightly", VM: "db-1", MoRef: "vm-42", Point: "p1", Result: "ok"}, nil)
	if r.Failed() {
		t.Fatal(r.Error)
	}
	for _, want := range []string{"CAIRN_HOOK=post_backup", "CAIRN_JOB=nightly", "CAIRN_VM=db-1", "CAIRN_VM_MOREF=vm-42", "CAIRN_POINT=p1", "CAIRN_RESULT=ok", "HOOKTEST_PLAIN=kept"} {
		if !strings.Contains(r.Output, want+"\n") {
			t.Errorf("environment lacks %s:\n%s", want, r.Output)
		}
	}
	for _, bad := range []string{"secret", "administrator", "inherited", "CAIRN_ERROR"} {
		if strings.Contains(r.Output, bad) {
			t.Errorf("environment holds %q:\n%s", bad, r.Output)
		}
	}
}

// TestRunPreHooksPolicies: fail and skip stop the list with their
// sentinel and the last output line; warn goes on with a warning.
func TestRunPreHooksPolicies(t *testing.T) {
	dir := t.TempDir()
	bad := writeScript(t, dir, "bad", "echo checking\necho replica lag 600s\nexit 1\n")
	good := writeScript(t, dir, "good", "exit 0\n")
	for _, tc := range []struct {
		policy string
		want   error
		ran    int
		warns  int
	}{{HookFail, ErrHookFailed, 1, 0}, {HookSkip, ErrSkippedByHook, 1, 0}, {HookWarn, nil, 2, 1}} {
		var ran []HookResult
		o := RunPreHooks(context.Background(), []Hook{{Point: HookPreSnapshot, Argv: []string{bad}, OnFailure: tc.policy}, {Point: HookPreSnapshot, Argv: []string{good}}},
			HookEnv{}, quiet, func(r HookResult) { ran = append(ran, r) })
		if !errors.Is(o.Err, tc.want) || (tc.want == nil) != (o.Err == nil) || len(ran) != tc.ran || len(o.Warnings) != tc.warns {
			t.Errorf("%s: err %v, ran %d, warnings %q", tc.policy, o.Err, len(ran), o.Warnings)
		}
		if o.Err != nil && !strings.HasSuffix(o.Err.Error(), ": exit status 1: replica lag 600s") {
			t.Errorf("%s: error %q lacks the last output line", tc.policy, o.Err)
		}
	}
}

// TestCheckHookProgram: relative, missing and non-executable programs are
// refused with the fix.
func TestCheckHookProgram(t *testing.T) {
	dir := t.TempDir()
	ok := writeScript(t, dir, "ok", "exit 0\n")
	noexec := filepath.Join(dir, "noexec")
	if err := os.WriteFile(noexec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		argv []string
		want string
	}{
		{[]string{ok, "x"}, ""},
		{nil, "command is empty"},
		{[]string{"db-freeze"}, "give its absolute path"},
		{[]string{filepath.Join(dir, "missing")}, "no such file"},
		{[]string{noexec}, "not executable"},
		{[]string{dir}, "not executable"},
	} {
		err := CheckHookProgram(tc.argv)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%q: %v, want %q", tc.argv, err, tc.want)
		}
	}
}

// TestRunHookBackgroundSurvives: a process a successful hook leaves in
// the background (a session holding a database lock until post_snapshot
// ends it) keeps running, and the hook is ok.
func TestRunHookBackgroundSurvives(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "session.pid")
	sh := writeScript(t, dir, "freeze", "sleep 300 >/dev/null 2>&1 &\necho $! > "+pidFile+"\necho locked\n")
	r := RunHook(context.Background(), Hook{Point: HookPreSnapshot, Argv: []string{sh}, Timeout: time.Minute}, HookEnv{}, quiet)
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	defer syscall.Kill(pid, syscall.SIGKILL)
	if r.Failed() || r.LastLine() != "locked" {
		t.Fatalf("result %+v", r)
	}
	if !running(pid) {
		t.Errorf("the hook's background session %d is gone", pid)
	}
}

// quiet is the tests' logger: hook outcomes are asserted, not printed.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// running reports whether process pid exists and is not a zombie (killed,
// not yet reaped by init).
func running(pid int) bool {
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(st), ") ")
	return !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}
