package guest

import "testing"

// walk drives an entryMode the way a tree walk does: dirs directories
// listed one after another (each with files), statting each listed
// directory's files (a LOOKUP of each bare one) when stat is set. It
// returns how many listings were bare.
func walk(m *entryMode, first uint64, dirs int, stat bool) (bare int) {
	for d := first; d < first+uint64(dirs); d++ {
		b := m.bare(d, true)
		if b {
			bare++
		}
		if stat && b {
			m.lookedUp(d)
		}
	}
	return bare
}

func TestEntryModeGuessesTheWalk(t *testing.T) {
	tests := []struct {
		name  string
		steps []bool // walks of 200 directories: true = stats its entries
		// want is the bare listings of each walk.
		want []int
	}{
		// find: probes at listings 16 and 32 go unused, so from the
		// third probe (48) on every listing is bare: 2 + 153.
		{"names only", []bool{false}, []int{155}},
		// tar: one bare probe in probeEvery listings, never more.
		{"stats every entry", []bool{true}, []int{200 / probeEvery}},
		// find, then tar: the first stat (of the first, bare listing)
		// brings attributes back: 1 + probes at 16, 32, ... 192.
		{"names then stats", []bool{false, true}, []int{155, 1 + 12}},
		// tar, then find: the probes continue the count (the tar's 200
		// listings are 8 short of the next probe): probes at 8 and 24
		// go unused, bare from 40 on: 2 + 161.
		{"stats then names", []bool{true, false}, []int{200 / probeEvery, 163}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &entryMode{}
			for i, stat := range tt.steps {
				if got := walk(m, uint64(1+i*1000), 200, stat); got != tt.want[i] {
					t.Errorf("walk %d (stat %v): %d bare listings, want %d", i, stat, got, tt.want[i])
				}
			}
		})
	}
}

func TestEntryModeDirectoriesOnlyNeverBare(t *testing.T) {
	m := &entryMode{}
	for d := uint64(1); d < 100; d++ {
		if m.bare(d, false) {
			t.Fatalf("listing %d without files went bare", d)
		}
	}
	if m.listings != 0 {
		t.Errorf("listings without files counted toward probes: %d", m.listings)
	}
	var nilMode *entryMode
	if nilMode.bare(1, true) {
		t.Error("a nil entryMode went bare")
	}
	nilMode.lookedUp(1)
}

func TestEntryModeLookupOutsideRecentListingsKeepsBare(t *testing.T) {
	m := &entryMode{}
	walk(m, 1, 100, false)
	if !m.bareMode {
		t.Fatal("not bare after a names-only walk")
	}
	m.lookedUp(5) // listed long ago: a path lookup, not the walk
	if !m.bareMode {
		t.Error("a lookup in a directory listed long ago brought attributes back")
	}
	m.lookedUp(100)
	if m.bareMode {
		t.Error("a lookup in the directory listed last kept listings bare")
	}
}
