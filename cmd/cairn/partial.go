package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// partialSuffix ends the temporary name of a file cairn writes out
// (export, restore-file): .NAME.cairn-partial beside NAME.
const partialSuffix = ".cairn-partial"

// partialFile is an output file written under a temporary name beside its
// final one and renamed into place only when complete, so that a failed or
// killed write (a full disk, kill -9) never leaves a file at the final
// name that looks complete but is not, nor destroys a file already there.
// While it is written the temporary file is flock'ed: the next run reuses
// (and so cleans) a leftover of a killed one, and refuses one that another
// live process is writing.
type partialFile struct {
	*os.File
	final string
}

// partialName is the temporary name of final: .NAME.cairn-partial, or a
// hash of NAME when that would be longer than a file name may be.
func partialName(final string) string {
	dir, base := filepath.Split(final)
	name := "." + base + partialSuffix
	if len(name) > nameMax {
		sum := sha256.Sum256([]byte(base))
		name = "." + hex.EncodeToString(sum[:8]) + partialSuffix
	}
	return filepath.Join(dir, name)
}

// createPartial opens the temporary file of final, empty, with mode perm.
func createPartial(final string, perm os.FileMode) (*partialFile, error) {
	tmp := partialName(final)
	for range 10 {
		f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE, perm)
		if errors.Is(err, os.ErrPermission) {
			// A killed restore-file's leftover already given its guest
			// mode (read-only to us): remove it and take a new one.
			if os.Remove(tmp) == nil {
				continue
			}
		}
		if err != nil {
			return nil, err
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("another process is writing %s (its temporary file %s is in use): wait for it to end, or write elsewhere", final, tmp)
			}
			return nil, fmt.Errorf("lock %s: %w", tmp, err)
		}
		// The file locked must still be the one at tmp: another run may
		// have renamed it into place (or removed it) meanwhile.
		var a, b unix.Stat_t
		if unix.Fstat(int(f.Fd()), &a) != nil || unix.Stat(tmp, &b) != nil || a.Ino != b.Ino || a.Dev != b.Dev {
			f.Close()
			continue
		}
		if err := f.Truncate(0); err != nil {
			f.Close()
			return nil, err
		}
		if err := f.Chmod(perm); err != nil {
			f.Close()
			return nil, err
		}
		return &partialFile{File: f, final: final}, nil
	}
	return nil, fmt.Errorf("cannot take %s: other processes keep replacing it", tmp)
}

// commit makes the file complete at its final name: synced first when
// sync (so that after a power loss the final name never holds a file
// whose data did not reach the disk), closed, renamed.
func (p *partialFile) commit(sync bool) error {
	if p.final == "" { // written in place (createOutput)
		return p.Close()
	}
	if sync {
		if err := p.Sync(); err != nil {
			p.abort()
			return fmt.Errorf("sync %s: %w", p.final, err)
		}
	}
	tmp := p.Name()
	if err := p.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("close %s: %w", p.final, err)
	}
	if err := os.Rename(tmp, p.final); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// abort removes the temporary file; a file at the final name stays as it was.
func (p *partialFile) abort() {
	if p.final != "" {
		os.Remove(p.Name())
	}
	p.Close()
}

// createOutput opens the output file out for export: a partialFile
// (through symlinks to the file they name), or, when out is an existing
// file that is not regular (a device, a FIFO), out itself, written in
// place with nothing to rename.
func createOutput(out string, perm os.FileMode) (*partialFile, error) {
	if fi, err := os.Stat(out); err == nil && !fi.Mode().IsRegular() {
		f, err := os.OpenFile(out, os.O_RDWR, perm)
		if err != nil {
			return nil, err
		}
		return &partialFile{File: f}, nil
	}
	final, err := realPath(out)
	if err != nil {
		return nil, err
	}
	return createPartial(final, perm)
}
