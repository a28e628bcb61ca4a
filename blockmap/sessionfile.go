package blockmap

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// A writer session is recorded in <repo>/sessions/<vm>.json (written and
// fsynced before the session creates any delta image, removed after its
// point is committed) rather than in the index: beginning a backup then
// needs only a read-only look at the index, and a commit is the one
// exclusive, read-write opening of a backup. Older repositories may still
// hold session records in the index ('s' keys); the sweep handles both.

func (r *Repo) sessionDir() string { return filepath.Join(r.dir, "sessions") }

func (r *Repo) sessionPath(vm string) string { return filepath.Join(r.sessionDir(), vm+".json") }

// writeSessionFile records an open session durably.
func (r *Repo) writeSessionFile(s sessionRecord) error {
	if err := os.MkdirAll(r.sessionDir(), DirMode); err != nil {
		return fmt.Errorf("record session: %w", err)
	}
	data, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("record session: %w", err)
	}
	if err := writeFileAtomic(r.sessionPath(s.VM), append(data, '\n')); err != nil {
		return fmt.Errorf("record session: %w", err)
	}
	return nil
}

// readSessionFile returns the session file of vm, if there is one.
func (r *Repo) readSessionFile(vm string) (sessionRecord, bool, error) {
	var s sessionRecord
	data, err := os.ReadFile(r.sessionPath(vm))
	if errors.Is(err, os.ErrNotExist) {
		return s, false, nil
	}
	if err != nil {
		return s, false, fmt.Errorf("read session file of %s: %w", vm, err)
	}
	if err := json.Unmarshal(data, &s); err != nil || s.VM != vm {
		return s, false, fmt.Errorf("session file %s is damaged (%v); remove it after checking that no backup of %s runs", r.sessionPath(vm), err, vm)
	}
	return s, true, nil
}

// removeSessionFile deletes the session file of vm; a missing one is fine.
func (r *Repo) removeSessionFile(vm string) error {
	if err := os.Remove(r.sessionPath(vm)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove session file of %s: %w", vm, err)
	}
	return nil
}

// readSessionFiles returns the sessions recorded in files.
func (r *Repo) readSessionFiles() ([]sessionRecord, error) {
	entries, err := os.ReadDir(r.sessionDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	var out []sessionRecord
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, ".json") {
			continue // writeFileAtomic's temporary files end in digits
		}
		s, ok, err := r.readSessionFile(strings.TrimSuffix(name, ".json"))
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, s)
		}
	}
	return out, nil
}
