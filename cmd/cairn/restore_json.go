package main

import (
	"context"
	"errors"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/blockmap"
)

// restoreFailed is a failed restore vm or restore disk; its JSON error
// object (--json) says which point it restored and what it left behind.
type restoreFailed struct {
	error
	fields map[string]any
}

func (e restoreFailed) Unwrap() error { return e.error }

// JSONFields are the fields restore vm/disk --json print beside "error".
func (e restoreFailed) JSONFields() map[string]any { return e.fields }

// restoreFailure adds to err of a restore of p what the restore did:
// "removed_vm" (the new VM it created and removed again), "left_vm" (one
// it could not remove and renamed), "powered_off" (a VM --replace powered
// off and left off), "cancelled" (Ctrl-C, SIGTERM); extra names the
// target (restore disk: its disk and VM).
func restoreFailure(ctx context.Context, p blockmap.Point, err error, extra map[string]any) error {
	if err == nil {
		return nil
	}
	f := map[string]any{"vm": p.VM, "point": p.ID, "cancelled": ctx.Err() != nil}
	for k, v := range extra {
		f[k] = v
	}
	var re *backupd.RestoreError
	if errors.As(err, &re) {
		for k, v := range map[string]string{"removed_vm": re.Removed, "left_vm": re.LeftVM, "powered_off": re.PoweredOff} {
			if v != "" {
				f[k] = v
			}
		}
	}
	return restoreFailed{err, f}
}

// restoreDiskJSON is what restore disk --json prints: the result with the
// total restore vm --json has (bytes written).
type restoreDiskJSON struct {
	*backupd.RestoreResult
	BytesWritten int64 `json:"bytes_written"`
}
