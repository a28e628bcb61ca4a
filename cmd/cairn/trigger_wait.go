package main

import (
	"fmt"

	"github.com/cairnbackup/cairn/backupd/serve"
	"github.com/cairnbackup/cairn/internal/bytesize"
)

// triggerEnded is what cairn trigger --wait prints for a run it waits
// for, and whether the run has ended: ok, failed, or cancelled (the
// server stopped before the backup ended; its next run backs the VM up).
func triggerEnded(r serve.RunRecord) (line string, ended bool) {
	switch r.State {
	case serve.StateOK:
		return fmt.Sprintf("%s: point %s (read %s, stored %s)", r.VM, r.Point, bytesize.IEC(r.BytesRead), bytesize.IEC(r.BytesWritten)), true
	case serve.StateFailed:
		return fmt.Sprintf("%s: FAILED: %s", r.VM, oneLine(r.Error)), true
	case serve.StateCancelled:
		return fmt.Sprintf("%s: CANCELLED: the server stopped before the backup ended (%s); its next run backs the VM up, or trigger it again", r.VM, oneLine(r.Error)), true
	}
	return "", false
}

// triggerExit is cairn trigger --wait's exit: 1 when a backup failed or
// was cancelled (none of them made a point), naming how many of each.
func triggerExit(failed, cancelled int) error {
	switch {
	case failed > 0 && cancelled > 0:
		return fmt.Errorf("%d backups failed, %d cancelled by the server stopping", failed, cancelled)
	case failed > 0:
		return fmt.Errorf("%d backups failed", failed)
	case cancelled > 0:
		return fmt.Errorf("%d backups cancelled by the server stopping (no point made)", cancelled)
	}
	return nil
}
