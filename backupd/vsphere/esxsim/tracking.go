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

// changeInfo builds one page of a QueryChangedDiskAreas answer: the extents
// made of the given sorted blocks that end after start, at most maxAreas of
// them. Length covers the rest of the disk when every extent fits, else only
// up to the end of the last extent returned.
func changeInfo(blocks []int64, capacity, start int64, maxAreas int) types.DiskChangeInfo {
	info := types.DiskChangeInfo{StartOffset: start}
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
		s = max(s, start)
		if len(info.ChangedArea) == maxAreas {
			truncated = true
			break
		}
		info.ChangedArea = append(info.ChangedArea, types.DiskChangeExtent{Start: s, Length: e - s})
	}
	if truncated {
		last := info.ChangedArea[len(info.ChangedArea)-1]
		info.Length = last.Start + last.Length - start
	} else {
		info.Length = capacity - start
	}
	return info
}
