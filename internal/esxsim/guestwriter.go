package esxsim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
)

// GuestWriter writes to a VM's disks as its guest OS would: through the
// running disk, recorded by change tracking. It is a back door for tests
// and the lab, not part of the vSphere API.
type GuestWriter struct {
	sim *Sim
	vm  string
}

// Extent is a byte range of a disk.
type Extent struct {
	Offset int64
	Length int64
}

// Guest returns a writer for the named VM's disks.
func (s *Sim) Guest(vmName string) (*GuestWriter, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.vmLocked(vmName); err != nil {
		return nil, err
	}
	return &GuestWriter{sim: s, vm: vmName}, nil
}

// WriteAt writes p at off on disk (an index of Sim.Disks) and records it.
func (g *GuestWriter) WriteAt(disk int, p []byte, off int64) error {
	return g.sim.write(g.vm, disk, p, off, OpWrite, true)
}

// WriteZeros writes length zero bytes at off: a tracked change that leaves
// no data ("*" does not report it, an incremental query does).
func (g *GuestWriter) WriteZeros(disk int, off, length int64) error {
	return g.sim.write(g.vm, disk, make([]byte, length), off, OpZero, true)
}

// WriteRandom writes length random bytes (from rng) at off.
func (g *GuestWriter) WriteRandom(disk int, off, length int64, rng *rand.Rand) error {
	return g.sim.write(g.vm, disk, randomBytes(rng, length), off, OpWrite, true)
}

// WriteRandomBlocks writes n random blocks of blockSize bytes at distinct
// blockSize-aligned offsets chosen by rng, and returns them in write order.
func (g *GuestWriter) WriteRandomBlocks(disk int, n int, blockSize int64, rng *rand.Rand) ([]Extent, error) {
	if blockSize <= 0 {
		return nil, fmt.Errorf("block size %d must be positive", blockSize)
	}
	infos, err := g.sim.Disks(g.vm)
	if err != nil {
		return nil, err
	}
	if disk < 0 || disk >= len(infos) {
		return nil, fmt.Errorf("vm %q disk %d: %w", g.vm, disk, ErrNotFound)
	}
	slots := infos[disk].Size / blockSize
	if int64(n) > slots {
		return nil, fmt.Errorf("%d blocks of %d bytes do not fit on a %d-byte disk", n, blockSize, infos[disk].Size)
	}
	used := map[int64]bool{}
	var out []Extent
	for len(out) < n {
		b := rng.Int64N(slots)
		if used[b] {
			continue
		}
		used[b] = true
		e := Extent{Offset: b * blockSize, Length: blockSize}
		if err := g.WriteRandom(disk, e.Offset, e.Length, rng); err != nil {
			return out, err
		}
		out = append(out, e)
	}
	return out, nil
}

// Grow extends the disk to newSize bytes (see Sim.GrowDisk).
func (g *GuestWriter) Grow(ctx context.Context, disk int, newSize int64) error {
	return g.sim.GrowDisk(ctx, g.vm, disk, newSize)
}

// SilentlyMissChange writes length random bytes at off on the VM's disk
// without telling change tracking: the CBT bug that `verify
// --against-source` exists to catch.
func (s *Sim) SilentlyMissChange(vmName string, disk int, off, length int64) error {
	return s.write(vmName, disk, randomBytes(rand.New(rand.NewPCG(uint64(off), uint64(length))), length), off, OpUntrackedWrite, false)
}

func randomBytes(rng *rand.Rand, n int64) []byte {
	p := make([]byte, n)
	for i := 0; i+8 <= len(p); i += 8 {
		v := rng.Uint64() | 1 // never an all-zero word, so the block is data
		for j := range 8 {
			p[i+j] = byte(v >> (8 * j))
		}
	}
	for i := len(p) &^ 7; i < len(p); i++ {
		p[i] = byte(rng.Uint32()) | 1
	}
	return p
}

// write is every guest write: it holds s.mu so a snapshot sees it whole or not at all.
func (s *Sim) write(vmName string, disk int, p []byte, off int64, op string, tracked bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.diskLocked(vmName, disk)
	if err != nil {
		return err
	}
	if off < 0 || off+int64(len(p)) > d.size {
		return fmt.Errorf("write %d bytes at %d: outside disk %s (%d bytes)", len(p), off, d.dsPath, d.size)
	}
	f, err := os.OpenFile(d.flatPath, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open disk %s: %w", d.dsPath, err)
	}
	if _, err := f.WriteAt(p, off); err != nil {
		f.Close()
		return fmt.Errorf("write disk %s at %d: %w", d.dsPath, off, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close disk %s: %w", d.dsPath, err)
	}
	if tracked {
		d.track.mark(off, int64(len(p)))
	}
	s.record(JournalEntry{Op: op, VM: vmName, Disk: disk, Offset: off, Length: int64(len(p))})
	return nil
}
