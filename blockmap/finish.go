package blockmap

import (
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// FinishInterrupted finishes what an interrupted writer of vm left behind
// (an open session of a killed backup, import or pull; the collection of
// a killed prune or forget) when no process holds the VM. A command that
// found nothing (more) to write for vm calls it, so that running a killed
// command again leaves no leftovers: a pull killed after its point was
// committed finds the point there and writes nothing.
func (r *Repo) FinishInterrupted(ctx context.Context, vm string) error {
	return r.finishInterrupted(ctx, vm)
}

// finishInterrupted finishes what an interrupted writer of vm left behind
// (the collection of a prune or forget killed after its deletion was
// durable, or the generation of a killed backup) when no process holds the
// VM; a held VM is left to its holder, which sweeps it itself. Prune and
// forget call it for VMs they have nothing (more) to delete from, so that
// running the killed command again releases the space without waiting
// for the VM's next backup.
func (r *Repo) finishInterrupted(ctx context.Context, vm string) error {
	var need bool
	err := r.view(ctx, func(db *badger.DB) error {
		return db.View(func(txn *badger.Txn) error {
			var err error
			need, err = vmNeedsSweep(txn, vm)
			return err
		})
	})
	if err != nil {
		return err
	}
	if !need {
		if _, hasFile, err := r.readSessionFile(vm); err != nil || !hasFile {
			return err
		}
	}
	lock, err := r.LockVM(ctx, vm, "cairn: finishing an interrupted write")
	var held *VMLockedError
	if errors.As(err, &held) {
		return nil
	}
	if err != nil {
		return err
	}
	defer lock.Release()
	r.releaseReserve()
	defer r.ensureReserve(true)
	r.log.Info("finishing an interrupted write (a backup, import, pull, prune or forget)", "vm", vm)
	if err := r.update(ctx, func(db *badger.DB) error { return r.sweepVM(db, vm) }); err != nil {
		return fmt.Errorf("finish the interrupted deletion of %s: %w", vm, err)
	}
	return nil
}
