package main

import (
	"errors"

	"github.com/cairnbackup/cairn/blockmap"
)

// adviceFor is what the CLI adds to a library error: what to do about it.
func adviceFor(err error) string {
	switch {
	case errors.Is(err, blockmap.ErrIndexDamaged):
		return "the repository index is damaged and nothing was read from the damaged part: run `cairn verify` to see which points are affected, and restore the repository from an offsite copy (`cairn verify` names bad blocks and block maps)"
	case errors.Is(err, blockmap.ErrNotReleased):
		return "the points are deleted, but their space stays in use until running mounts can be told: make <repo>/catalog.seq writable again (free space, lift a quota or `chattr -i`); the next prune, forget or backup of the VM then releases it"
	}
	return ""
}

// deletionResult prints what a prune or forget deleted when it deleted
// points but could not release their space, and passes the error on.
func deletionResult(print func() error, err error) error {
	if errors.Is(err, blockmap.ErrNotReleased) {
		if perr := print(); perr != nil {
			return perr
		}
	}
	return err
}
