package guest

// OpenVolumes reports how many guest filesystems g keeps open (tests).
func (g *Guests) OpenVolumes() int { return g.set.open() }

// HeldBytes reports what the open guest filesystems' caches hold (tests).
func (g *Guests) HeldBytes() int64 {
	g.set.mu.Lock()
	defer g.set.mu.Unlock()
	var n int64
	for e := g.set.lru.Front(); e != nil; e = e.Next() {
		n += e.Value.(*volumeDir).st.held()
	}
	return n
}
