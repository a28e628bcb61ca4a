package ldm

import "fmt"

// raid5Reader reads a RAID-5 component: columns in partition index
// order, stripe-sized chunks laid out left-symmetric (as libldm maps
// Windows RAID-5 volumes to dm-raid's raid5_ls): in row r of n columns
// the parity is in column n-1-r%n and the row's n-1 data chunks follow it
// round the columns. With one column's disk missing, its chunks are the
// XOR of the row's other chunks.
func (pl *plex) raid5Reader() (func([]byte, int64) error, error) {
	n := int64(len(pl.parts))
	if n < 3 || pl.stripe <= 0 || (pl.columns != 0 && pl.columns != len(pl.parts)) {
		return nil, corrupt("RAID-5 component: %d partitions, %d columns, stripe %d", n, pl.columns, pl.stripe)
	}
	missing := -1
	for i, p := range pl.parts {
		if p.index != i {
			return nil, corrupt("RAID-5 component: partition %s has column %d, expected %d", p.name, p.index, i)
		}
		if p.disk == nil {
			if missing >= 0 {
				return nil, fmt.Errorf("ldm: RAID-5 partitions %s and %s are on disks that are not among the disks of this point: %w",
					pl.parts[missing].name, p.name, ErrMissing)
			}
			missing = i
		}
	}
	return func(b []byte, off int64) error {
		for len(b) > 0 {
			c, in := off/pl.stripe, off%pl.stripe
			k := min(int64(len(b)), pl.stripe-in)
			row := c / (n - 1)
			pd := n - 1 - row%n
			col := (pd + 1 + c%(n-1)) % n
			at := row*pl.stripe + in
			if int(col) != missing {
				if err := pl.parts[col].readAt(b[:k], at); err != nil {
					return err
				}
			} else {
				// Rebuild from the row's other chunks, parity included.
				clear(b[:k])
				tmp := make([]byte, k)
				for i, p := range pl.parts {
					if i == missing {
						continue
					}
					if err := p.readAt(tmp, at); err != nil {
						return err
					}
					for x := range tmp {
						b[x] ^= tmp[x]
					}
				}
			}
			b, off = b[k:], off+k
		}
		return nil
	}, nil
}
