package md

// DeclaredSize is the array's size as its superblocks declare it, whether
// or not it can be read (an array missing more members than its level
// survives): the bytes each member contributes (the superblock's used
// component size, else the smallest member's data area, in whole chunks)
// times the members that hold data — raid1 one, raid4 and raid5 all but
// one, raid6 all but two, raid10 all over its copies, as the kernel sizes
// them. raid0 and linear record no component size: their present members
// count with their own data areas and a missing one as the smallest
// present member (exact when the members are alike, as they usually
// are). 0 when no member was found or the geometry is not one md knows.
func (a *Array) DeclaredSize() int64 {
	per := a.perMember()
	n := int64(a.RaidDisks)
	if per <= 0 || n <= 0 {
		return 0
	}
	switch a.Level {
	case Level1:
		return per
	case Level0, LevelLinear:
		var sum int64
		for _, m := range a.Members {
			if m == nil {
				sum += per
				continue
			}
			s := m.DataSize
			if a.Chunk > 0 {
				s -= s % a.Chunk
			}
			sum += s
		}
		return sum
	case Level10:
		g, err := a.raid10Geometry(per)
		if err != nil {
			return 0
		}
		return g.size
	case Level4, Level5:
		return per * (n - 1)
	case Level6:
		if n < 3 {
			return 0
		}
		return per * (n - 2)
	}
	return 0
}
