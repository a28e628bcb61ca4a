package guest

import "sync"

// Bare entries: a READDIRPLUS answer carries each entry's attributes, and
// the kernel creates an inode for every entry it gets (and go-fuse a node,
// and the reader stats it). A walk that only needs names and types (find,
// ls -R, anything that reads d_type) pays that for every file although it
// stats none of them; one that stats every entry (tar, ls -l, cp -a,
// rsync) would pay a LOOKUP round trip per file without it, and store-ahead
// (storeahead.go) can only push files the kernel has an inode for. So each
// volume guesses which kind of walk is going on:
//
//   - Directories always come with attributes: every walk descends into
//     them, and the kernel would otherwise send a LOOKUP first.
//   - Other entries (files, symlinks, devices) come with attributes at
//     first. Every so often a listing is a probe, listed bare (node id 0:
//     the kernel lists the name but creates no inode for it, and looks it
//     up when it is used): the first listing with at most probeFiles such
//     entries once probeEvery listings passed since the last probe, or
//     any listing once 4*probeEvery passed (small probes cost a walk that
//     stats, such as tar, few LOOKUPs). When probeMisses probes in a row
//     see none of their entries looked up by the time of the next probe,
//     the walk does not stat what it lists, and every listing goes bare.
//   - In bare mode, a LOOKUP of a non-directory entry of one of the last
//     recentBare directories listed means the walk stats its entries
//     again: listings carry attributes again.
//
// A wrong guess costs what the other way costs (a LOOKUP per file, or an
// inode per file), never a wrong answer: a bare entry is looked up when
// used and gets the same attributes.
const (
	probeEvery  = 32
	probeFiles  = 8
	probeMisses = 2
	recentBare  = 4
)

// entryMode is the guess of one volume. The zero value gives attributes.
type entryMode struct {
	mu       sync.Mutex
	bareMode bool               // non-directory entries come bare
	since    int                // listings with files since the last probe
	probe    uint64             // the last probe's directory (0: none)
	probeHit bool               // an entry of probe was looked up
	misses   int                // probes in a row without a hit
	recent   [recentBare]uint64 // directories listed bare most recently
	next     int
}

// bare reports whether the listing of dir being opened should leave its
// non-directory entries without attributes; files is how many it has.
func (m *entryMode) bare(dir uint64, files int) bool {
	if m == nil || files == 0 {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.bareMode {
		m.since++
		if m.since < probeEvery || files > probeFiles && m.since < 4*probeEvery {
			return false
		}
		m.since = 0
		if m.probe != 0 {
			if m.probeHit {
				m.misses = 0
			} else {
				m.misses++
			}
		}
		m.probe, m.probeHit = dir, false
		if m.misses >= probeMisses {
			m.bareMode, m.probe = true, 0
		}
	}
	m.recent[m.next] = dir
	m.next = (m.next + 1) % recentBare
	return true
}

// lookedUp notes the LOOKUP of a non-directory entry of dir (a request of
// the kernel's, not one made for a READDIRPLUS answer).
func (m *entryMode) lookedUp(dir uint64) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.bareMode {
		if dir == m.probe {
			m.probeHit = true
		}
		return
	}
	for _, d := range m.recent {
		if d == dir {
			m.bareMode, m.since, m.probe, m.probeHit, m.misses = false, 0, 0, false, 0
			return
		}
	}
}
