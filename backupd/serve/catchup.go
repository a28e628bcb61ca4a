package serve

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/backupd/schedule"
)

// ScheduleFileName is the file in the repository where serve keeps when
// each backup job's scheduled run last began, so that a cron time missed
// while serve was stopped runs once when it starts again.
const ScheduleFileName = "serve-schedule.json"

// scheduleFile is ScheduleFileName's content.
type scheduleFile struct {
	// Began maps a job's name to when its last scheduled run began.
	Began map[string]time.Time `json:"began"`
}

// loadSchedule reads the jobs' last runs of earlier servers; a missing
// or unreadable file means none (nothing is caught up).
func (t *timers) loadSchedule(repoDir string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.file = filepath.Join(repoDir, ScheduleFileName)
	t.saved = map[string]time.Time{}
	data, err := os.ReadFile(t.file)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var f scheduleFile
	if err := json.Unmarshal(data, &f); err != nil {
		return fmt.Errorf("%s: %w", t.file, err)
	}
	for job, at := range f.Began {
		t.saved["job/"+job] = at
	}
	return nil
}

// saveSchedule writes the backup jobs' last runs (those of this server,
// and of earlier ones for jobs not run since).
func (t *timers) saveSchedule() error {
	t.mu.Lock()
	if t.file == "" {
		t.mu.Unlock()
		return nil
	}
	f := scheduleFile{Began: map[string]time.Time{}}
	for key, at := range t.saved {
		f.Began[strings.TrimPrefix(key, "job/")] = at
	}
	for key, tk := range t.tasks {
		if strings.HasPrefix(key, "job/") && !tk.began.IsZero() {
			f.Began[strings.TrimPrefix(key, "job/")] = tk.began.UTC()
		}
	}
	file := t.file
	t.mu.Unlock()
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(file), "."+ScheduleFileName+".tmp")
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

// missedRun returns the cron time of key's schedule that passed while no
// server ran it: the newest time before now when it is after the job's
// last run recorded by an earlier server. A job never run before (no
// record) has missed nothing.
func (t *timers) missedRun(key string, sc schedule.Schedule, now time.Time) (time.Time, bool) {
	t.mu.Lock()
	last, ok := t.saved[key]
	t.mu.Unlock()
	if !ok || sc.RunAtStart() {
		return time.Time{}, false
	}
	prev, ok := prevRun(sc, now)
	if !ok || !prev.After(last) {
		return time.Time{}, false
	}
	return prev, true
}

// prevRun is the newest time of sc before now, looked for up to a year
// and a day back.
func prevRun(sc schedule.Schedule, now time.Time) (time.Time, bool) {
	for _, back := range []time.Duration{2 * time.Hour, 50 * time.Hour, 9 * 24 * time.Hour, 32 * 24 * time.Hour, 367 * 24 * time.Hour} {
		x := sc.Next(now.Add(-back))
		if !x.Before(now) {
			continue
		}
		for {
			y := sc.Next(x)
			if !y.Before(now) {
				return x, true
			}
			x = y
		}
	}
	return time.Time{}, false
}
