package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestRestoreAdviceVDDK: a restore whose default NBD command fails for
// want of nbdkit's vddk plugin (what nbdkit prints then) says how to write
// a locally mounted datastore instead; other errors get no advice.
func TestRestoreAdviceVDDK(t *testing.T) {
	nbdkit := errors.New("NBD server nbdkit exited before serving (exit status 1): nbdkit: error: cannot open plugin 'vddk': " +
		"/usr/lib/x86_64-linux-gnu/nbdkit/plugins/nbdkit-vddk-plugin.so: cannot open shared object file: No such file or directory")
	err := withRestoreAdvice(fmt.Errorf("restore of web point 1: restore disk scsi0-0: no write transport worked: nbd: %w", nbdkit))
	if !errors.Is(err, nbdkit) || !strings.Contains(err.Error(), "--nbd-command '"+labNBDCommand+"'") || !strings.Contains(err.Error(), "--datastore-dir") {
		t.Errorf("advice missing: %v", err)
	}
	other := errors.New("VM \"web\": a VM of that name exists")
	if got := withRestoreAdvice(other); got != other {
		t.Errorf("advice added to %v: %v", other, got)
	}
}
