package partinfo

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// formatGUID renders a 16-byte on-disk (mixed-endian) GUID in the usual
// upper-case textual form, e.g. C12A7328-F81F-11D2-BA4B-00A0C93EC93B.
func formatGUID(b []byte) string {
	if len(b) < 16 {
		return ""
	}
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X",
		binary.LittleEndian.Uint32(b[0:4]),
		binary.LittleEndian.Uint16(b[4:6]),
		binary.LittleEndian.Uint16(b[6:8]),
		b[8:10], b[10:16])
}

// formatUUID renders 16 big-endian bytes as a lower-case RFC 4122 UUID,
// the form Linux tools (blkid) print for ext4, XFS, btrfs and swap.
func formatUUID(b []byte) string {
	if len(b) < 16 {
		return ""
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// isZero reports whether every byte of b is zero.
func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// cString returns the bytes of b up to the first NUL, trimmed of spaces.
func cString(b []byte) string {
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		b = b[:i]
	}
	return strings.TrimSpace(string(b))
}
