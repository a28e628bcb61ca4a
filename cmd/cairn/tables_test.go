package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/blockmap"
)

// countingWriter counts the Write calls it gets.
type countingWriter struct {
	writes int
	b      strings.Builder
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.b.Write(p)
}

// TestListingsWriteInBlocks: cairn points and cairn jobs write their
// tables in large blocks, not a write call per cell (a site's 12,000
// points made 200,000 writes to the terminal).
func TestListingsWriteInBlocks(t *testing.T) {
	const n = 2000
	var cat []blockmap.VMSummary
	var jobs []backupd.JobRecord
	start := time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC)
	for v := range n / 20 {
		vm := blockmap.VMSummary{Name: fmt.Sprintf("vm-%04d", v)}
		for p := range 20 {
			at := start.Add(time.Duration(p) * 24 * time.Hour)
			vm.Points = append(vm.Points, blockmap.Point{VM: vm.Name, ID: at.Format(blockmap.PointIDLayout), Gen: uint32(p + 1), Time: at,
				Consistency: blockmap.ConsistencyQuiesced, Disks: []blockmap.DiskInfo{{Name: "disk0", Size: 4 << 20, StoredBytes: 64 << 10}}})
			jobs = append(jobs, backupd.JobRecord{ID: fmt.Sprintf("j%d-%d", v, p), Kind: backupd.JobBackup, VM: vm.Name, Start: at, End: at.Add(time.Minute),
				State: backupd.JobOK, Point: at.Format(blockmap.PointIDLayout), BytesRead: 3 << 16, BytesWritten: 3 << 16})
		}
		cat = append(cat, vm)
	}
	for _, tc := range []struct {
		name  string
		print func(w *countingWriter) error
	}{
		{"points", func(w *countingWriter) error { return printPointsTable(w, t.TempDir(), cat) }},
		{"jobs", func(w *countingWriter) error { return printJobTable(w, jobs) }},
	} {
		var w countingWriter
		if err := tc.print(&w); err != nil {
			t.Fatal(err)
		}
		lines := strings.Count(w.b.String(), "\n")
		if lines != n+1 {
			t.Fatalf("%s: %d lines, want %d", tc.name, lines, n+1)
		}
		if most := w.b.Len()/(32<<10) + 2; w.writes > most {
			t.Errorf("%s: %d write calls for %d lines (%d bytes); want at most %d", tc.name, w.writes, lines, w.b.Len(), most)
		}
	}
}

// maxWriter records the largest Write it gets.
type maxWriter struct {
	most int
	b    bytes.Buffer
}

func (w *maxWriter) Write(p []byte) (int, error) {
	w.most = max(w.most, len(p))
	return w.b.Write(p)
}

// TestPointsJSONStreamed: cairn points --json prints the same document as
// one json encoding of it would (printJSON), one VM at a time: no write
// (and no buffer) holds the whole listing.
func TestPointsJSONStreamed(t *testing.T) {
	start := time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC)
	var cat []blockmap.VMSummary
	for v := range 60 {
		vm := blockmap.VMSummary{Name: fmt.Sprintf("vm-%04d <&>", v)}
		for p := range 40 {
			at := start.Add(time.Duration(p) * 24 * time.Hour)
			vm.Points = append(vm.Points, blockmap.Point{VM: vm.Name, ID: at.Format(blockmap.PointIDLayout), Gen: uint32(p + 1), Time: at,
				Consistency: blockmap.ConsistencyQuiesced, Meta: json.RawMessage(`{"job_id": "j", "vm_moref": "vm-1"}`),
				Disks: []blockmap.DiskInfo{{Name: "disk0", Size: 4 << 20, StoredBytes: 64 << 10, Meta: json.RawMessage(`{"change_id":"52 1a/3"}`)}}})
		}
		cat = append(cat, vm)
	}
	totals := pointsTotals{VMs: len(cat), Points: 2400, StoredBytes: 1 << 30, RepoBytes: 2 << 30}
	for _, c := range [][]blockmap.VMSummary{nil, cat[:1], cat} {
		dir := t.TempDir()
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetIndent("", "  ")
		vms := withBootVerdicts(dir, c)
		if err := enc.Encode(struct {
			VMs    []pointsJSONVM `json:"vms"`
			Totals pointsTotals   `json:"totals"`
		}{vms, totals}); err != nil {
			t.Fatal(err)
		}
		var got maxWriter
		if err := printPointsJSON(&got, dir, c, totals); err != nil {
			t.Fatal(err)
		}
		if got.b.String() != want.String() {
			t.Fatalf("%d VMs: streamed JSON differs:\n%s\nwant:\n%s", len(c), got.b.String(), want.String())
		}
		if len(c) == len(cat) && got.most > 128<<10 {
			t.Errorf("a write of %d bytes for a %d-byte listing: want at most 128 KiB at once", got.most, got.b.Len())
		}
	}
}
