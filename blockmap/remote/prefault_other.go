//go:build !linux

package remote

// newBlock returns a buffer of n bytes for a block the reader will keep.
func newBlock(n int) []byte { return make([]byte, n) }
