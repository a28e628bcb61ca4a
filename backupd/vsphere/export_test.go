package vsphere

// SetMaxChangedAreas lowers the changed-area cap for a test; the returned
// function restores it.
func SetMaxChangedAreas(n int) (restore func()) {
	old := maxChangedAreas
	maxChangedAreas = n
	return func() { maxChangedAreas = old }
}
