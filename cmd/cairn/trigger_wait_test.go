package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/backupd/serve"
)

// TestTriggerWaitCancelled: cairn trigger --wait ends on a run a
// stopping server cancelled (it waited for ok or failed only), says so,
// and exits non-zero.
func TestTriggerWaitCancelled(t *testing.T) {
	for _, tc := range []struct {
		r          serve.RunRecord
		ended      bool
		wantInLine string
	}{
		{serve.RunRecord{VM: "web", State: serve.StateOK, Point: "p1"}, true, "web: point p1"},
		{serve.RunRecord{VM: "web", State: serve.StateFailed, Error: "nbd: refused"}, true, "web: FAILED: nbd: refused"},
		{serve.RunRecord{VM: "web", State: serve.StateCancelled, Error: "server stopping: context canceled"}, true, "web: CANCELLED: the server stopped"},
		{serve.RunRecord{VM: "web", State: serve.StateRunning}, false, ""},
		{serve.RunRecord{VM: "web", State: serve.StateSkipped, Error: "skipped by pre hook: pre_snapshot hook /x: exit status 1: lag"}, true, "web: skipped: skipped by pre hook: pre_snapshot hook /x: exit status 1: lag"},
		{serve.RunRecord{VM: "web", State: serve.StateQueued}, false, ""},
	} {
		line, ended := triggerEnded(tc.r)
		if ended != tc.ended || !strings.Contains(line, tc.wantInLine) {
			t.Errorf("%s: %q ended %v, want %v with %q", tc.r.State, line, ended, tc.ended, tc.wantInLine)
		}
	}
	code := func(err error) int {
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			return ec.ExitCode()
		}
		return -1
	}
	if err := triggerExit(0, 1); err == nil || !strings.Contains(err.Error(), "1 backups cancelled") || code(err) != exitCancelled {
		t.Errorf("exit with a cancelled run: %v (exit %d, want %d)", err, code(err), exitCancelled)
	}
	if err := triggerExit(2, 1); err == nil || !strings.Contains(err.Error(), "2 backups failed, 1 cancelled") || code(err) != 1 {
		t.Errorf("exit with failed and cancelled runs: %v (exit %d, want 1)", err, code(err))
	}
	if err := triggerExit(0, 0); err != nil {
		t.Errorf("exit with every run ok: %v", err)
	}
}
