package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cairnbackup/cairn/backupd/notify"
)

// NotifyStateFileName is the file in the repository where serve keeps
// what its notifications must remember across restarts: the RPO breaches
// told, the VMs whose backup failure was told and the events sent
// recently (de-duplication). Without it a restart during an outage tells
// the breach again, and a recovery while serve was down is never told.
const NotifyStateFileName = "serve-notify.json"

// loadNotifyState reads the notifications' state an earlier server left
// in repoDir; later states are written there. A missing file is no
// state; an unreadable or corrupt one is logged and ignored (breaches
// still lasting are then told once more).
func (s *Server) loadNotifyState(repoDir string) {
	file := filepath.Join(repoDir, NotifyStateFileName)
	s.note.mu.Lock()
	s.note.file = file
	s.note.mu.Unlock()
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var st notify.State
	if err == nil {
		err = json.Unmarshal(data, &st)
	}
	if err != nil {
		s.log.Warn("cannot read what notifications told before this start; breaches and failures still lasting are told again, and the file is rewritten", "file", file, "error", err)
		return
	}
	s.note.mu.Lock()
	s.note.saved = &st
	s.note.mu.Unlock()
}

// saveNotifyState writes the notifier's and the RPO tracker's state when
// it changed (through a temporary file and a rename, mode 0600). A
// failure is logged: notifications go on, a restart may repeat some.
func (s *Server) saveNotifyState() {
	s.note.saveMu.Lock()
	defer s.note.saveMu.Unlock()
	s.note.mu.Lock()
	n, tr, file := s.note.notifier, s.note.rpo, s.note.file
	s.note.mu.Unlock()
	if n == nil || file == "" {
		return
	}
	st := n.State()
	if tr != nil {
		st.RPOBreached, st.RPONoPoint = tr.State()
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return
	}
	data = append(data, '\n')
	if bytes.Equal(data, s.note.written) {
		return
	}
	if err := writeFileAtomic(file, data); err != nil {
		s.log.Warn("cannot record what notifications told; a restart may tell some again", "file", file, "error", err)
		return
	}
	s.note.written = data
	s.note.writes++
	s.note.mu.Lock()
	s.note.saved = &st
	s.note.mu.Unlock()
}

// writeFileAtomic replaces file by data (mode 0600) through ".NAME.tmp"
// beside it, synced before the rename.
func writeFileAtomic(file string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(file), "."+filepath.Base(file)+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, file)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", file, err)
	}
	return nil
}
