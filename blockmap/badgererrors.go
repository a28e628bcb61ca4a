package blockmap

import (
	"errors"
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
