package nfsserve

import (
	"io/fs"
	"path/filepath"
	"syscall"
)

// OverlayBytes is the space the overlays of the session in sessionDir
// take on disk (allocated blocks, not the disks' sizes): about what the
// clients wrote. A missing session counts 0.
func OverlayBytes(sessionDir string) int64 {
	var n int64
	filepath.WalkDir(filepath.Join(sessionDir, overlayDir), func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			}
		}
		return nil
	})
	return n
}
