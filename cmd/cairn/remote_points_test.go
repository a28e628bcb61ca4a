package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
)

// TestRemotePointsTable: `cairn points --remote` shows each point's
// generation (which --point takes on a remote too).
func TestRemotePointsTable(t *testing.T) {
	pts := []blockmap.Point{{VM: "web", ID: "2026-12-06T08-39-32Z", Gen: 7, Time: time.Date(2026, 12, 6, 8, 39, 32, 0, time.UTC), Consistency: "quiesced",
		Disks: []blockmap.DiskInfo{{Name: "scsi0-0", Size: 1 << 30}}}}
	var b strings.Builder
	printRemotePoints(&b, "offsite", pts, nil)
	lines := strings.Split(b.String(), "\n")
	if f := strings.Fields(lines[0]); len(f) < 3 || f[2] != "GEN" {
		t.Fatalf("header %q has no GEN column", lines[0])
	}
	if f := strings.Fields(lines[1]); len(f) < 3 || f[2] != "7" {
		t.Errorf("row %q: want generation 7 in the GEN column", lines[1])
	}
}

// TestRemotePointHint: a point a remote lacks sends the user to the
// remote's list of points, not the local repository's.
func TestRemotePointHint(t *testing.T) {
	pts := []blockmap.Point{{VM: "web", ID: "2026-12-06T08-39-32Z", Gen: 1}}
	_, err := findRemotePoint(pts, "offsite", "web", "9")
	if h := hintFor(err); !strings.Contains(h, "cairn points --remote offsite --vm web") {
		t.Errorf("hint %q for %v", h, err)
	}
	_, err = findRemotePoint(nil, "offsite", "db", "latest") // the callers pass the VM's points
	if h := hintFor(fmt.Errorf("restore: %w", err)); !strings.Contains(h, "cairn points --remote offsite") {
		t.Errorf("hint %q for %v", h, err)
	}
	if _, err := findRemotePoint(pts, "offsite", "web", "1"); err != nil {
		t.Errorf("generation 1: %v", err)
	}
}

// TestSelectPull: pull --point takes an id, a generation number or
// latest like every other --point (it took only an id: `pull --vm web
// --point latest` and `--point 2` said the remote had no such points).
func TestSelectPull(t *testing.T) {
	pts := []blockmap.Point{{VM: "db", ID: "a", Gen: 1}, {VM: "web", ID: "b", Gen: 1}, {VM: "web", ID: "c", Gen: 2}}
	for _, tc := range []struct {
		vms   []string
		point string
		want  string // ids, or "error: text"
	}{
		{nil, "", "a b c"},
		{[]string{"web"}, "", "b c"},
		{[]string{"web"}, "latest", "c"},
		{[]string{"web"}, "1", "b"},
		{[]string{"web"}, "c", "c"},
		{[]string{"web"}, "9", "error: cairn points --remote offsite --vm web"},
		{nil, "latest", "error: --point needs exactly one --vm"},
		{[]string{"mail"}, "", "error: the remote has no points of mail (its VMs: db, web"},
	} {
		sel, err := selectPull(pts, "offsite", tc.vms, tc.point)
		var got []string
		for _, p := range sel {
			got = append(got, p.ID)
		}
		g := strings.Join(got, " ")
		if err != nil {
			g = "error: " + err.Error()
			if h := hintFor(err); h != "" {
				g += " (" + h + ")"
			}
		}
		if strings.HasPrefix(tc.want, "error: ") && !strings.Contains(g, strings.TrimPrefix(tc.want, "error: ")) || !strings.HasPrefix(tc.want, "error: ") && g != tc.want {
			t.Errorf("pull --vm %v --point %q: %s, want %s", tc.vms, tc.point, g, tc.want)
		}
	}
}

// TestRemoteGenerationAmbiguous: a generation number that two points of a
// VM carry on a remote (replicated by the old and the rebuilt repository)
// is refused, naming both ids; an id or a unique generation still works.
func TestRemoteGenerationAmbiguous(t *testing.T) {
	pts := []blockmap.Point{
		{VM: "web", ID: "2026-12-06T08-00-00Z", Gen: 1},
		{VM: "web", ID: "2026-12-06T09-00-00Z", Gen: 2},
		{VM: "web", ID: "2026-12-07T08-00-00Z", Gen: 2}, // the rebuilt repository's second point
	}
	_, err := findRemotePoint(pts, "offsite", "web", "2")
	if err == nil || !strings.Contains(err.Error(), "2026-12-06T09-00-00Z, 2026-12-07T08-00-00Z") || !strings.Contains(err.Error(), "give the point's id") {
		t.Fatalf("ambiguous generation: %v", err)
	}
	for ref, want := range map[string]string{"1": "2026-12-06T08-00-00Z", "2026-12-07T08-00-00Z": "2026-12-07T08-00-00Z"} {
		if p, err := findRemotePoint(pts, "offsite", "web", ref); err != nil || p.ID != want {
			t.Errorf("%s: %v %v, want %s", ref, p.ID, err, want)
		}
	}
}

// TestSelectPullEmptyRemote: `cairn pull` from a remote that holds no
// points names no VM when none was given (it said "the remote has no
// points of  (it holds no points; ...)"), and names the VM when one was.
func TestSelectPullEmptyRemote(t *testing.T) {
	for _, tc := range []struct {
		vms  []string
		want string
	}{
		{nil, "pull: not found: remote offsite has no points (cairn replicate --remote offsite copies"},
		{[]string{"mail"}, "pull: not found: the remote has no points of mail (it holds no points; cairn points --remote offsite lists them)"},
	} {
		_, err := selectPull(nil, "offsite", tc.vms, "")
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "of  ") {
			t.Errorf("pull --vm %v from an empty remote: %v, want %s...", tc.vms, err, tc.want)
		}
	}
}
