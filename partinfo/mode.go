package partinfo

import "io/fs"

// UnixMode converts a Unix st_mode (permission bits, setuid, setgid,
// sticky and the S_IFMT type) into an fs.FileMode. known is false when the
// type bits are none of the seven Unix file types; the mode then carries
// no type bits (a regular file), and the caller decides what an unknown
// type means on its filesystem.
func UnixMode(m uint32) (mode fs.FileMode, known bool) {
	mode = fs.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	switch m & 0o170000 {
	case 0o100000:
	case 0o040000:
		mode |= fs.ModeDir
	case 0o120000:
		mode |= fs.ModeSymlink
	case 0o020000:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case 0o060000:
		mode |= fs.ModeDevice
	case 0o010000:
		mode |= fs.ModeNamedPipe
	case 0o140000:
		mode |= fs.ModeSocket
	default:
		return mode, false
	}
	return mode, true
}
