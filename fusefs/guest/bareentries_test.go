package guest

import "testing"

// walk drives an entryMode the way a tree walk does: dirs directories
// listed one after another, each with files non-directory entries,
// statting each listed directory's entries (a LOOKUP of each bare one)
// when stat is set. It returns how many listings were bare.
func walk(m *entryMode, first uint64, dirs, files int, stat bool) (bare int) {
	for d := first; d < first+uint64(dirs); d++ {
		b := m.bare(d, files)
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
	type step struct {
		stat  bool // the walk stats its entries (tar) or not (find)
		files int  // non-directory entries per directory
		want  int  // bare listings of the walk's 200
	}
	tests := []struct {
		name  string
		steps []step
	}{
		// find: probes at listings 32 and 64 go unused, so from the
		// third probe (96) on every listing is bare: 2 + 105.
		{"names only", []step{{false, 3, 107}}},
		// tar: one bare probe in 32 listings, never more.
		{"stats every entry", []step{{true, 3, 6}}},
		// Large directories are probed only every 128 listings (a probe
		// costs tar a LOOKUP per file): probe at 128 only.
		{"stats every entry, large directories", []step{{true, 20, 1}}},
		// find, then tar: the first stat (in the first listing, bare)
		// brings attributes back: 1 + probes 32, 64, ... 192 listings later.
		{"names then stats", []step{{false, 3, 107}, {true, 3, 1 + 6}}},
		// tar, then find: the probe count goes on (the tar's last probe
		// was 8 listings before its end): probes at 24 and 56 go unused,
		// bare from 88 on: 2 + 113.
		{"stats then names", []step{{true, 3, 6}, {false, 3, 115}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &entryMode{}
			for i, s := range tt.steps {
				if got := walk(m, uint64(1+i*1000), 200, s.files, s.stat); got != s.want {
					t.Errorf("walk %d (%+v): %d bare listings, want %d", i, s, got, s.want)
				}
			}
		})
	}
}

func TestEntryModeDirectoriesOnlyNeverBare(t *testing.T) {
	m := &entryMode{}
	for d := uint64(1); d < 500; d++ {
		if m.bare(d, 0) {
			t.Fatalf("listing %d without files went bare", d)
		}
	}
	if m.since != 0 {
		t.Errorf("listings without files counted toward probes: %d", m.since)
	}
	var nilMode *entryMode
	if nilMode.bare(1, 1) {
		t.Error("a nil entryMode went bare")
	}
	nilMode.lookedUp(1)
}

func TestEntryModeLookupOutsideRecentListingsKeepsBare(t *testing.T) {
	m := &entryMode{}
	walk(m, 1, 200, 3, false)
	if !m.bareMode {
		t.Fatal("not bare after a names-only walk")
	}
	m.lookedUp(150) // listed 50 directories ago: a path lookup, not the walk
	if !m.bareMode {
		t.Error("a lookup in a directory listed long ago brought attributes back")
	}
	m.lookedUp(200)
	if m.bareMode {
		t.Error("a lookup in the directory listed last kept listings bare")
	}
}
