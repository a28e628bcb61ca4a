package md

import "fmt"

// raid5/6 layouts (the superblock's layout field).
const (
	algLeftAsymmetric  = 0
	algRightAsymmetric = 1
	algLeftSymmetric   = 2
	algRightSymmetric  = 3
	algParity0         = 4
	algParityN         = 5
	// The DDF raid6 layouts (dm-raid's raid6_zr, raid6_nr, raid6_nc).
	algRotatingZeroRestart = 8
	algRotatingNRestart    = 9
	algRotatingNContinue   = 10
)

// stripeMap places data chunk i of stripe row r: the data slot, the
// parity slot (P) and, for raid6, Q.
type stripeMap func(r int64, i int) (data, p, q int)

func (a *Array) parityMap() (stripeMap, error) {
	n := int64(a.RaidDisks)
	switch a.Level {
	case Level4:
		return func(r int64, i int) (int, int, int) { return i, int(n - 1), -1 }, nil
	case Level5:
		switch a.Layout {
		case algLeftAsymmetric:
			return func(r int64, i int) (int, int, int) {
				pd := int(n - 1 - r%n)
				if i >= pd {
					i++
				}
				return i, pd, -1
			}, nil
		case algRightAsymmetric:
			return func(r int64, i int) (int, int, int) {
				pd := int(r % n)
				if i >= pd {
					i++
				}
				return i, pd, -1
			}, nil
		case algLeftSymmetric:
			return func(r int64, i int) (int, int, int) {
				pd := int(n - 1 - r%n)
				return (pd + 1 + i) % int(n), pd, -1
			}, nil
		case algRightSymmetric:
			return func(r int64, i int) (int, int, int) {
				pd := int(r % n)
				return (pd + 1 + i) % int(n), pd, -1
			}, nil
		case algParity0:
			return func(r int64, i int) (int, int, int) { return i + 1, 0, -1 }, nil
		case algParityN:
			return func(r int64, i int) (int, int, int) { return i, int(n - 1), -1 }, nil
		}
	case Level6:
		switch a.Layout {
		case algLeftSymmetric:
			return func(r int64, i int) (int, int, int) {
				pd := int(n - 1 - r%n)
				qd := (pd + 1) % int(n)
				return (pd + 2 + i) % int(n), pd, qd
			}, nil
		case algRightSymmetric:
			return func(r int64, i int) (int, int, int) {
				pd := int(r % n)
				qd := (pd + 1) % int(n)
				return (pd + 2 + i) % int(n), pd, qd
			}, nil
		case algRotatingZeroRestart, algRotatingNRestart:
			// P at r%n (zero restart) or n-1-(r+1)%n (N restart), Q
			// after it; data from slot 0, skipping P and Q ("Q D D D P"
			// when P is last).
			restartN := a.Layout == algRotatingNRestart
			return func(r int64, i int) (int, int, int) {
				pd := int(r % n)
				if restartN {
					pd = int(n - 1 - (r+1)%n)
				}
				if pd == int(n-1) {
					return i + 1, pd, 0
				}
				if i >= pd {
					i += 2
				}
				return i, pd, pd + 1
			}, nil
		case algRotatingNContinue:
			// Left-symmetric with Q just before P.
			return func(r int64, i int) (int, int, int) {
				pd := int(n - 1 - r%n)
				return (pd + 1 + i) % int(n), pd, (pd + int(n) - 1) % int(n)
			}, nil
		}
	}
	return nil, fmt.Errorf("md %s: %s layout %d: %w", a.Name, LevelName(a.Level), a.Layout, ErrUnsupported)
}

// openParity reads raid4/5/6: chunks in stripe rows; a chunk on a
// missing member is rebuilt as the XOR of the row's other data chunks
// and P. One missing member is read; more give ErrMissing.
func (a *Array) openParity(v *Volume, per int64) (*Volume, error) {
	if a.Chunk <= 0 {
		return nil, fmt.Errorf("md %s: %s without a chunk size: %w", a.Name, LevelName(a.Level), ErrCorrupt)
	}
	place, err := a.parityMap()
	if err != nil {
		return nil, err
	}
	parity := 1
	if a.Level == Level6 {
		parity = 2
	}
	dataDisks := a.RaidDisks - parity
	if dataDisks < 1 {
		return nil, fmt.Errorf("md %s: %d members: %w", a.Name, a.RaidDisks, ErrCorrupt)
	}
	if m := a.Missing(); m > 1 {
		return nil, fmt.Errorf("md %s (%s): %d of %d members missing; cairn rebuilds at most one: %w", a.Name, LevelName(a.Level), m, a.RaidDisks, ErrMissing)
	}
	v.size = per * int64(dataDisks)
	v.read = func(p []byte, off int64) error {
		for len(p) > 0 {
			c, in := off/a.Chunk, off%a.Chunk
			k := min(int64(len(p)), a.Chunk-in)
			row, i := c/int64(dataDisks), int(c%int64(dataDisks))
			d, pd, _ := place(row, i)
			at := row*a.Chunk + in
			if a.Members[d] != nil {
				if err := a.member(d, p[:k], at); err != nil {
					return err
				}
			} else {
				// Rebuild from P and the other data chunks of the row.
				if a.Members[pd] == nil {
					return fmt.Errorf("chunk %d: data and parity both missing: %w", c, ErrMissing)
				}
				if err := a.member(pd, p[:k], at); err != nil {
					return err
				}
				tmp := make([]byte, k)
				for j := 0; j < dataDisks; j++ {
					dj, _, _ := place(row, j)
					if dj == d {
						continue
					}
					if err := a.member(dj, tmp, at); err != nil {
						return err
					}
					for x := range tmp {
						p[x] ^= tmp[x]
					}
				}
			}
			p, off = p[k:], off+k
		}
		return nil
	}
	return v, nil
}
