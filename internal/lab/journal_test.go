package lab

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestJournalReplay(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vm.jsonl")
	j, err := openJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 23, 1, 0, 0, 0, time.UTC)
	batches := [][]JournalEntry{
		{{Batch: 0, Path: "/a", SHA256: "a0", Size: 1}, {Batch: 0, Path: "/b", SHA256: "b0", Size: 2},
			{Batch: 0, Disk: 1, Path: "/a", SHA256: "d1", Size: 3}, {Batch: 0, Disk: 1, Part: 2, Path: "/x", SHA256: "x", Size: 4}},
		{{Batch: 1, Path: "/a", SHA256: "a1", Size: 5}, {Batch: 1, Path: "/b", Deleted: true}},
		{{Batch: 2, Path: "/b", SHA256: "b2", Size: 6}},
	}
	for i, b := range batches {
		for k := range b {
			b[k].Start, b[k].Time = t0.Add(time.Duration(i)*time.Second), t0.Add(time.Duration(i)*time.Second+time.Millisecond)
			if b[k].Part == 0 {
				b[k].Part = 1
			}
		}
		if err := j.append(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.close(); err != nil {
		t.Fatal(err)
	}
	// A batch being written: its last line has no newline yet.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"batch":3,"path":"/a","sha2`)
	f.Close()

	entries, err := ReadJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 7 {
		t.Fatalf("%d entries, want 7 (the partial line ignored)", len(entries))
	}
	check := func(disk, part, batch int, want map[string]FileState) {
		t.Helper()
		got := State(entries, disk, part, batch)
		if len(got) != len(want) {
			t.Errorf("disk %d part %d batch %d: %v, want %v", disk, part, batch, got, want)
		}
		for p, w := range want {
			if got[p] != w {
				t.Errorf("disk %d part %d batch %d: %s = %v, want %v", disk, part, batch, p, got[p], w)
			}
		}
	}
	check(0, 1, 0, map[string]FileState{"/a": {"a0", 1}, "/b": {"b0", 2}})
	check(0, 1, 1, map[string]FileState{"/a": {"a1", 5}})
	check(0, 1, 2, map[string]FileState{"/a": {"a1", 5}, "/b": {"b2", 6}})
	check(1, 1, 2, map[string]FileState{"/a": {"d1", 3}})
	check(1, 2, 2, map[string]FileState{"/x": {"x", 4}})
	if bs := Batches(entries); len(bs) != 3 || bs[2] != 2 {
		t.Errorf("batches %v", bs)
	}
	if bt := BatchTimes(entries)[1]; !bt.Start.Equal(t0.Add(time.Second)) || !bt.End.Equal(t0.Add(time.Second+time.Millisecond)) {
		t.Errorf("batch 1 times %+v", bt)
	}
}

func TestReadJournalErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadJournal(filepath.Join(dir, "missing.jsonl")); err == nil {
		t.Error("missing journal accepted")
	}
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte("{\"batch\":0}\nnot json\n"), 0o644)
	if _, err := ReadJournal(bad); err == nil {
		t.Error("corrupt journal accepted")
	}
}

// FuzzReadJournal: any bytes give entries or an error, never a panic.
func FuzzReadJournal(f *testing.F) {
	f.Add([]byte(`{"start":"2026-11-23T01:00:00Z","time":"2026-11-23T01:00:01Z","batch":1,"vm":"v","disk":0,"part":1,"path":"/a","sha256":"00","size":1}` + "\n"))
	f.Add([]byte("{\"deleted\":true}\n{\n"))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "j.jsonl")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		entries, err := ReadJournal(path)
		if err == nil {
			State(entries, 0, 1, 1<<30)
			Batches(entries)
		}
	})
}
