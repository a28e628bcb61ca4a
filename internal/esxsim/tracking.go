package esxsim

import (
	"crypto/rand"
	"fmt"
	"strconv"
	"strings"

	"github.com/vmware/govmomi/vim25/types"
)

// BlockSize is the granularity at which change tracking records writes and
// reports areas, as ESXi's CBT does for disks of this size.
const BlockSize = 64 << 10

// tracking is the change-tracking state of one running disk.
//
// A changeId is "<epoch>/<seq>". Writes are stamped with the current seq;
// taking a snapshot hands out "<epoch>/<seq>" and then increments seq, so
// the blocks changed since changeId k are exactly those stamped above k.
type tracking struct {
	epoch  string   // "" while change tracking is off
	seq    uint64   // stamp of writes made now
	stamps []uint64 // per block: stamp of the last tracked write, 0 for none
}

// frozenTracking is a disk's tracking state captured at a snapshot.
type frozenTracking struct {
	epoch  string
	seq    uint64
	stamps []uint64
}

// changeID is the changeId of this frozen moment, "" when tracking was off.
func (f frozenTracking) changeID() string {
	if f.epoch == "" {
		return ""
	}
	return f.epoch + "/" + strconv.FormatUint(f.seq, 10)
}

// start begins a new epoch (tracking on) or clears the state (tracking off).
func (t *tracking) start(on bool, size int64) error {
	t.stamps = make([]uint64, blocksFor(size))
	t.seq = 1
	t.epoch = ""
	if !on {
		return nil
	}
	e, err := newEpoch()
	if err != nil {
		return err
	}
	t.epoch = e
	return nil
}

// mark records a tracked write of length bytes at off.
func (t *tracking) mark(off, length int64) {
	if t.epoch == "" || length <= 0 {
		return
	}
	for b := off / BlockSize; b*BlockSize < off+length && b < int64(len(t.stamps)); b++ {
		t.stamps[b] = t.seq
	}
}

// freeze captures the state for a snapshot and opens the next seq.
func (t *tracking) freeze() frozenTracking {
	f := frozenTracking{epoch: t.epoch, seq: t.seq, stamps: append([]uint64(nil), t.stamps...)}
	if t.epoch != "" {
		t.seq++
	}
	return f
}

func blocksFor(size int64) int64 { return (size + BlockSize - 1) / BlockSize }

// newEpoch makes an epoch in ESXi's changeId style: "52 1f ... 9a-0b ... 3c".
func newEpoch() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("epoch: %w", err)
	}
	b[0] = 0x52
	hex := make([]string, 16)
	for i, v := range b {
		hex[i] = fmt.Sprintf("%02x", v)
	}
	return strings.Join(hex[:8], " ") + "-" + strings.Join(hex[8:], " "), nil
}

// parseChangeID splits "<epoch>/<seq>".
func parseChangeID(id string) (epoch string, seq uint64, ok bool) {
	i := strings.LastIndexByte(id, '/')
	if i <= 0 {
		return "", 0, false
	}
	seq, err := strconv.ParseUint(id[i+1:], 10, 64)
	if err != nil {
		return "", 0, false
	}
	return id[:i], seq, true
}

// changedBlocks lists, in order, the blocks of f stamped after seq.
func (f frozenTracking) changedBlocks(seq uint64) []int64 {
	var out []int64
	for b, s := range f.stamps {
		if s > seq {
			out = append(out, int64(b))
		}
	}
	return out
}

// DefaultMaxPageBytes is how much of a disk one QueryChangedDiskAreas
// answer covers at most. ESXi answers in pages that can end before the
// disk does, also over stretches without changes, so a page can hold no
// ChangedArea at all while more changes follow: callers must loop on
// startOffset until the capacity, never stop at an empty page. Disks no
// larger than this are answered as before, in pages bounded only by the
// number of extents.
const DefaultMaxPageBytes = 512 << 20

// changeInfo builds one page of a QueryChangedDiskAreas answer for a query
// at start, covering at most DefaultMaxPageBytes of the disk and at most
// maxAreas extents (see changePage).
func changeInfo(blocks []int64, capacity, start int64, maxAreas int) types.DiskChangeInfo {
	return changePage(blocks, capacity, start, maxAreas, DefaultMaxPageBytes)
}

// changePage builds one page of a QueryChangedDiskAreas answer: StartOffset
// is start, as on ESXi, and the page covers [start, start+Length), where
// Length reaches at most maxBytes (no bound when maxBytes <= 0) and at most
// to capacity. ChangedArea lists the extents made of the given sorted blocks
// that overlap the page, clipped to it, at most maxAreas of them; when more
// extents begin inside the page, Length reaches only to the end of the last
// extent returned. A page over an unchanged stretch has Length > 0 and no
// ChangedArea.
func changePage(blocks []int64, capacity, start int64, maxAreas int, maxBytes int64) types.DiskChangeInfo {
	info := types.DiskChangeInfo{StartOffset: start}
	end := capacity
	if maxBytes > 0 && maxBytes < capacity-start {
		end = start + maxBytes
	}
	truncated := false
	for i := 0; i < len(blocks); {
		j := i
		for j+1 < len(blocks) && blocks[j+1] == blocks[j]+1 {
			j++
		}
		s, e := blocks[i]*BlockSize, min((blocks[j]+1)*BlockSize, capacity)
		i = j + 1
		if e <= start {
			continue
		}
		if s >= end {
			break
		}
		s, e = max(s, start), min(e, end)
		if len(info.ChangedArea) == maxAreas {
			truncated = true
			break
		}
		info.ChangedArea = append(info.ChangedArea, types.DiskChangeExtent{Start: s, Length: e - s})
	}
	if truncated {
		last := info.ChangedArea[len(info.ChangedArea)-1]
		end = last.Start + last.Length
	}
	info.Length = end - start
	return info
}
