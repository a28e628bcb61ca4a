package lab

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"
)

// GenerationFile is the guest file holding the number of the last batch of
// changes the guest writer applied (batch 0 is the initial content).
const GenerationFile = "/var/lib/cairn-lab/generation"

// JournalEntry is one line of a VM's journal: a file's content after a
// batch of guest changes, or its deletion.
type JournalEntry struct {
	// Start is when the batch began to be copied into the running disk,
	// Time when it was there: a snapshot that holds the batch was taken
	// after Start, one that does not before Time.
	Start time.Time `json:"start"`
	Time  time.Time `json:"time"`
	Batch int       `json:"batch"`
	VM    string    `json:"vm"`
	Disk  int       `json:"disk"`
	// Part is the partition number the file lives on (1-based).
	Part    int    `json:"part"`
	Path    string `json:"path"`
	SHA256  string `json:"sha256,omitempty"`
	Size    int64  `json:"size"`
	Deleted bool   `json:"deleted,omitempty"`
}

// FileState is what a file holds at some batch.
type FileState struct {
	SHA256 string
	Size   int64
}

// journal appends entries to one JSON-lines file.
type journal struct {
	mu sync.Mutex
	f  *os.File
}

func openJournal(path string) (*journal, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	return &journal{f: f}, nil
}

// append writes a batch's entries with one write; a reader that finds a
// last line without its newline ignores it.
func (j *journal) append(entries []JournalEntry) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	var buf []byte
	for _, e := range entries {
		b, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("encode journal entry: %w", err)
		}
		buf = append(append(buf, b...), '\n')
	}
	if _, err := j.f.Write(buf); err != nil {
		return fmt.Errorf("write journal %s: %w", j.f.Name(), err)
	}
	return nil
}

func (j *journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.f.Close()
}

// ReadJournal reads a VM's journal (Dir/journal/<vm>.jsonl). A last line
// without its newline (a batch being written) is ignored.
func ReadJournal(path string) ([]JournalEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	defer f.Close()
	var out []JournalEntry
	r := bufio.NewReader(f)
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if err != nil {
			break // EOF, possibly after a partial line
		}
		var e JournalEntry
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("journal %s line %d: %w", path, n, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// State returns the files of one disk partition as they were after batch
// (inclusive), keyed by guest path.
func State(entries []JournalEntry, disk, part, batch int) map[string]FileState {
	st := make(map[string]FileState)
	for _, e := range entries {
		if e.Batch > batch || e.Disk != disk || e.Part != part {
			continue
		}
		if e.Deleted {
			delete(st, e.Path)
		} else {
			st[e.Path] = FileState{SHA256: e.SHA256, Size: e.Size}
		}
	}
	return st
}

// BatchTime is when a batch was copied into the running disk.
type BatchTime struct {
	Start, End time.Time
}

// BatchTimes returns when each batch reached the disk, indexed by batch.
func BatchTimes(entries []JournalEntry) map[int]BatchTime {
	out := make(map[int]BatchTime)
	for _, e := range entries {
		out[e.Batch] = BatchTime{Start: e.Start, End: e.Time}
	}
	return out
}

// Batches lists the batch numbers in the journal in order.
func Batches(entries []JournalEntry) []int {
	seen := BatchTimes(entries)
	out := make([]int, 0, len(seen))
	for b := range seen {
		out = append(out, b)
	}
	sort.Ints(out)
	return out
}
