package backupd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Hook points: where an administrator's command runs around a backup.
const (
	HookPreJob       = "pre_job"       // once per serve job run, before its VMs
	HookPostJob      = "post_job"      // once per serve job run, after its VMs
	HookPreSnapshot  = "pre_snapshot"  // per VM, before the backup snapshot (freeze)
	HookPostSnapshot = "post_snapshot" // per VM, right after the snapshot exists or failed (thaw)
	HookPostBackup   = "post_backup"   // per VM, after the point is committed or the backup failed
)

// Failure policies of a pre hook (Hook.OnFailure).
const (
	HookFail = "fail" // the VM's backup (or the job run) fails (default)
	HookSkip = "skip" // the VM (or the job run) is skipped, no failure
	HookWarn = "warn" // it goes on, with a warning
)

// hookPipeWait is how long a hook's end waits for background processes
// it left holding its output.
const hookPipeWait = 5 * time.Second

// DefaultHookTimeout bounds a hook without a timeout of its own.
const DefaultHookTimeout = 5 * time.Minute

// HookOutputMax is how much of a hook's output (stdout and stderr
// together, the end of it) is kept.
const HookOutputMax = 64 << 10

// hookLogMax is how much of the end of a hook's output goes into the log
// (the job and run records keep HookOutputMax).
const hookLogMax = 2 << 10

// ErrHookFailed marks a backup failed by a pre hook whose policy is fail.
var ErrHookFailed = errors.New("hook failed")

// ErrSkippedByHook marks a VM (or a job run) skipped by a pre hook whose
// policy is skip: no failure, nothing backed up.
var ErrSkippedByHook = errors.New("skipped by pre hook")

// Hook is one administrator's command at a hook point: an argv run
// without a shell on the appliance (not in the guest).
type Hook struct {
	Point     string        // HookPreJob, ...
	Argv      []string      // Argv[0] an absolute path
	Timeout   time.Duration // 0: DefaultHookTimeout
	OnFailure string        // pre hooks: HookFail (""), HookSkip or HookWarn
}

// ParseHookPolicy checks an on_failure value ("" is HookFail).
func ParseHookPolicy(s string) (string, error) {
	switch s {
	case "", HookFail:
		return HookFail, nil
	case HookSkip, HookWarn:
		return s, nil
	}
	return "", fmt.Errorf("on_failure %q: want fail, skip or warn", s)
}

// CheckHookProgram checks that argv[0] is an absolute path to an
// executable file.
func CheckHookProgram(argv []string) error {
	if len(argv) == 0 || argv[0] == "" {
		return errors.New("command is empty: give the program and its arguments as a list, like [/usr/local/bin/db-freeze, --host, db1]")
	}
	p := argv[0]
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("program %q: give its absolute path (hooks run without a shell or PATH lookup; use [/bin/sh, -c, \"...\"] for a shell)", p)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("program %s: %w", p, err)
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("program %s is not executable (chmod +x it)", p)
	}
	return nil
}

// HookResult is what one run of a hook did; it is kept in the job record
// and the serve run record.
type HookResult struct {
	Hook     string    `json:"hook"` // the hook point
	Argv     []string  `json:"argv"`
	Start    time.Time `json:"start"`
	Seconds  float64   `json:"seconds"`
	ExitCode int       `json:"exit_code"` // -1: did not exit by itself
	// Error is why the hook failed ("" when it exited 0): exit status,
	// timeout, or that it could not start.
	Error string `json:"error,omitempty"`
	// Output is the end of its stdout and stderr (HookOutputMax bytes);
	// Truncated says that the beginning was dropped.
	Output    string `json:"output,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
}

// Failed reports whether the hook failed.
func (r HookResult) Failed() bool { return r.Error != "" }

// LastLine is the last non-empty line of the hook's output.
func (r HookResult) LastLine() string {
	lines := strings.Split(strings.TrimRight(r.Output, "\r\n\t "), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// Summary is one line naming the hook, why it failed and its last output
// line.
func (r HookResult) Summary() string {
	prog := "(no command)"
	if len(r.Argv) > 0 {
		prog = r.Argv[0]
	}
	s := fmt.Sprintf("%s hook %s: %s", r.Hook, prog, r.Error)
	if l := r.LastLine(); l != "" {
		s += ": " + l
	}
	return s
}

// HookEnv is what a hook is told in its environment (CAIRN_*).
type HookEnv struct {
	Job, VM, MoRef, Point, Result, Error string
}

// hookEnviron is the environment of a hook: cairn's own without the
// variables that may hold credentials (childEnv), and the CAIRN_* ones.
func hookEnviron(point string, e HookEnv) []string {
	env := childEnv(os.Environ())
	out := env[:0]
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "CAIRN_JOB", "CAIRN_VM", "CAIRN_VM_MOREF", "CAIRN_POINT", "CAIRN_RESULT", "CAIRN_ERROR", "CAIRN_HOOK":
			continue // never inherited: a hook sees only what is true for it
		}
		out = append(out, kv)
	}
	add := func(k, v string) {
		if v != "" {
			out = append(out, k+"="+v)
		}
	}
	add("CAIRN_HOOK", point)
	add("CAIRN_JOB", e.Job)
	add("CAIRN_VM", e.VM)
	add("CAIRN_VM_MOREF", e.MoRef)
	add("CAIRN_POINT", e.Point)
	add("CAIRN_RESULT", e.Result)
	add("CAIRN_ERROR", e.Error)
	return out
}

// RunHook runs h in its own process group with env, keeps the end of its
// output and kills the whole group when its timeout passes or ctx ends
// (pass context.WithoutCancel for a hook that must run anyway, like a
// thaw). It logs the outcome.
func RunHook(ctx context.Context, h Hook, env HookEnv, log *slog.Logger) HookResult {
	if log == nil {
		log = slog.Default()
	}
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = DefaultHookTimeout
	}
	res := HookResult{Hook: h.Point, Argv: h.Argv, Start: time.Now().UTC(), ExitCode: -1}
	if len(h.Argv) == 0 {
		res.Error = "no command"
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := &tailBuffer{max: HookOutputMax}
	cmd := exec.CommandContext(ctx, h.Argv[0], h.Argv[1:]...)
	cmd.Env = hookEnviron(h.Point, env)
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// the whole group: a shell's children (sleep, ssh) die with it
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	// A process the hook leaves in the background (a session holding a
	// lock until post_snapshot ends it) keeps running; one that still
	// holds the output pipe is waited for hookPipeWait at most.
	cmd.WaitDelay = hookPipeWait
	err := cmd.Run()
	if errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success() {
		err = nil // the hook itself ended well
	}
	res.Seconds = time.Since(res.Start).Seconds()
	res.Output, res.Truncated = out.String(), out.dropped
	if cmd.ProcessState != nil && cmd.ProcessState.Exited() {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	switch {
	case err == nil:
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		res.Error = fmt.Sprintf("timed out after %s (its process group was killed)", timeout)
	case ctx.Err() != nil:
		res.Error = "stopped: " + context.Cause(ctx).Error()
	case res.ExitCode > 0:
		res.Error = fmt.Sprintf("exit status %d", res.ExitCode)
	default:
		res.Error = err.Error()
	}
	tail := res.Output
	if len(tail) > hookLogMax {
		tail = "..." + tail[len(tail)-hookLogMax:]
	}
	attrs := []any{"hook", h.Point, "argv", h.Argv, "vm", env.VM, "exit_code", res.ExitCode, "seconds", res.Seconds, "output", tail}
	if res.Failed() {
		log.Warn("hook failed", append(attrs, "error", res.Error)...)
	} else {
		log.Info("hook ran", attrs...)
	}
	return res
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu      sync.Mutex
	max     int
	buf     []byte
	dropped bool
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if len(p) >= b.max {
		b.dropped = b.dropped || len(b.buf) > 0 || len(p) > b.max
		b.buf = append(b.buf[:0], p[len(p)-b.max:]...)
		return n, nil
	}
	if over := len(b.buf) + len(p) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
		b.dropped = true
	}
	b.buf = append(b.buf, p...)
	return n, nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// VMHooks are the hooks run around one VM's backup (JobOptions.Hooks).
type VMHooks struct {
	PreSnapshot, PostSnapshot, PostBackup []Hook
	// Job is CAIRN_JOB (the serve job's name; "" for cairn backup).
	Job string
	// Record, when set, is called with each hook's result as it ends.
	Record func(HookResult)
}

// Empty reports whether there is no hook.
func (h *VMHooks) Empty() bool {
	return h == nil || len(h.PreSnapshot)+len(h.PostSnapshot)+len(h.PostBackup) == 0
}

// HookOutcome is what a list of pre hooks decided: the error a fail or
// skip policy ends the VM's (or job's) backup with, and warnings.
type HookOutcome struct {
	Err      error
	Warnings []string
}

// RunPreHooks runs hooks in order, each with its policy: the first that
// fails with policy fail or skip stops the list and sets Err (wrapping
// ErrHookFailed or ErrSkippedByHook); warn adds a warning and goes on.
func RunPreHooks(ctx context.Context, hooks []Hook, env HookEnv, log *slog.Logger, record func(HookResult)) HookOutcome {
	var o HookOutcome
	for _, h := range hooks {
		r := RunHook(ctx, h, env, log)
		record(r)
		if !r.Failed() {
			continue
		}
		switch h.OnFailure {
		case HookWarn:
			o.Warnings = append(o.Warnings, r.Summary())
		case HookSkip:
			o.Err = fmt.Errorf("%w: %s", ErrSkippedByHook, r.Summary())
			return o
		default:
			o.Err = fmt.Errorf("%w: %s", ErrHookFailed, r.Summary())
			return o
		}
	}
	return o
}

// RunPostHooks runs hooks in order whatever ctx says (each within its own
// timeout): a post hook's failure is a warning.
func RunPostHooks(ctx context.Context, hooks []Hook, env HookEnv, log *slog.Logger, record func(HookResult)) (warnings []string) {
	ctx = context.WithoutCancel(ctx)
	for _, h := range hooks {
		r := RunHook(ctx, h, env, log)
		record(r)
		if r.Failed() {
			warnings = append(warnings, r.Summary())
		}
	}
	return warnings
}
