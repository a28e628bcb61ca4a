package blockmap

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// Badger wraps the errors below with fmt's %+v rather than %w (its y.Wrap
// outside debug mode), so errors.Is cannot see them through the wrapping
// and no typed check exists: they are recognised by their text.
// TestBadgerErrorTexts makes real Badger produce each of them and fails
// when an upgrade changes a text.

// badgerDirLockedText begins the error of a badger.Open whose directory
// lock (flock of the index directory) is held by another open.
const badgerDirLockedText = "Cannot acquire directory lock"

// isTruncateNeeded reports whether a read-only open failed because a
// killed writer left a write-ahead log that only a read-write open can
// replay and truncate (badger.ErrTruncateNeeded).
func isTruncateNeeded(err error) bool {
	return err != nil && (errors.Is(err, badger.ErrTruncateNeeded) || strings.Contains(err.Error(), badger.ErrTruncateNeeded.Error()))
}

// isDirLocked reports whether an open failed on Badger's directory lock.
func isDirLocked(err error) bool {
	return err != nil && strings.Contains(err.Error(), badgerDirLockedText)
}

// hasEmptyLogFile reports whether the index holds an empty write-ahead log
// (NNNNN.mem) or value log (NNNNN.vlog): a writer killed between creating
// the file and sizing it leaves one. A read-only open fails on it
// ("truncate ...: invalid argument", it cannot size a file opened
// read-only); a read-write open sizes it and goes on.
func (r *Repo) hasEmptyLogFile() bool {
	ents, err := os.ReadDir(filepath.Join(r.dir, "index"))
	if err != nil {
		return false
	}
	for _, e := range ents {
		if ext := filepath.Ext(e.Name()); ext != ".mem" && ext != ".vlog" {
			continue
		}
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && fi.Size() == 0 {
			return true
		}
	}
	return false
}

// dropEmptyLogFiles removes empty write-ahead logs and value logs
// (NNNNN.mem, NNNNN.vlog of size 0) from the index before a read-write
// open. A writer killed between creating one and sizing it leaves it, and
// Badger (v4.9) then refuses every open, read-write too ("while opening
// fid: N err: Create a new file", "During db.vlog.open err: ... Create a
// new file"): the repository could not be used any more. An empty log
// holds no entry, so removing it loses nothing. The caller holds the
// exclusive index lock.
func (r *Repo) dropEmptyLogFiles() {
	dir := filepath.Join(r.dir, "index")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if ext := filepath.Ext(e.Name()); ext != ".mem" && ext != ".vlog" {
			continue
		}
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && fi.Size() == 0 {
			p := filepath.Join(dir, e.Name())
			if err := os.Remove(p); err != nil {
				r.log.Warn("cannot remove the empty log file of an interrupted writer", "path", p, "err", err)
			} else {
				r.log.Info("removed the empty log file of an interrupted writer", "path", p)
			}
		}
	}
}
