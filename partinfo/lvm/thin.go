package lvm

import "fmt"

// thinReader maps a thin LV's segment through its pool's metadata.
func (lv *LV) thinReader(s *Segment, depth int) (func([]byte, int64) (int, error), error) {
	return nil, fmt.Errorf("thin volumes: %w", ErrUnsupported)
}
