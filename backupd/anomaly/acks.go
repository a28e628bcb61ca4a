package anomaly

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// AckFile is the file of a repository that records acknowledgements.
const AckFile = "anomaly-acks.jsonl"

// Ack acknowledges one suspicious point as a false alarm.
type Ack struct {
	VM    string    `json:"vm"`
	Point string    `json:"point"`
	By    string    `json:"by,omitempty"`
	Note  string    `json:"note,omitempty"`
	Time  time.Time `json:"time"`
}

// Acks are a repository's acknowledgements, by VM and point id.
type Acks map[string]map[string]Ack

// Acked reports whether the point of vm was acknowledged.
func (a Acks) Acked(vm, point string) bool {
	_, ok := a[vm][point]
	return ok
}

// LoadAcks reads the acknowledgements of the repository in dir (none
// when the file does not exist). A damaged line is skipped.
func LoadAcks(dir string) (Acks, error) {
	acks := Acks{}
	f, err := os.Open(filepath.Join(dir, AckFile))
	if errors.Is(err, fs.ErrNotExist) {
		return acks, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read acknowledged suspicious points: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var a Ack
		if json.Unmarshal(sc.Bytes(), &a) != nil || a.VM == "" || a.Point == "" {
			continue
		}
		if acks[a.VM] == nil {
			acks[a.VM] = map[string]Ack{}
		}
		acks[a.VM][a.Point] = a
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read acknowledged suspicious points from %s: %w", f.Name(), err)
	}
	return acks, nil
}

// Acknowledge appends a to the repository's acknowledgements (one write
// of one line, in append mode, made durable before it returns).
func Acknowledge(dir string, a Ack) error {
	if a.Time.IsZero() {
		a.Time = time.Now().UTC()
	}
	line, err := json.Marshal(a)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, AckFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600) // every repository file is 0600 (docs/repository.md)
	if err != nil {
		return fmt.Errorf("record the acknowledgement: %w", err)
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("record the acknowledgement in %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("record the acknowledgement in %s: %w", f.Name(), err)
	}
	return f.Close()
}
