package guest

// OpenVolumes reports how many guest filesystems g keeps open (tests).
func (g *Guests) OpenVolumes() int { return g.set.open() }
