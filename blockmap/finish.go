package blockmap

import (
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

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
	lock, err := r.LockVM(ctx, vm, "cairn prune or forget")
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
	r.log.Info("finishing an interrupted prune, forget or backup", "vm", vm)
	if err := r.update(ctx, func(db *badger.DB) error { return r.sweepVM(db, vm) }); err != nil {
		return fmt.Errorf("finish the interrupted deletion of %s: %w", vm, err)
	}
	return nil
}
