package partinfo

import (
	"io/fs"
	"testing"
)

func TestUnixMode(t *testing.T) {
	for _, c := range []struct {
		m     uint32
		want  fs.FileMode
		known bool
	}{
		{0o100644, 0o644, true},
		{0o104755, 0o755 | fs.ModeSetuid, true},
		{0o042775, 0o775 | fs.ModeDir | fs.ModeSetgid, true},
		{0o041777, 0o777 | fs.ModeDir | fs.ModeSticky, true},
		{0o120777, 0o777 | fs.ModeSymlink, true},
		{0o020620, 0o620 | fs.ModeDevice | fs.ModeCharDevice, true},
		{0o060660, 0o660 | fs.ModeDevice, true},
		{0o010600, 0o600 | fs.ModeNamedPipe, true},
		{0o140755, 0o755 | fs.ModeSocket, true},
		{0o000000, 0, false},
		{0o170644, 0o644, false},
	} {
		got, known := UnixMode(c.m)
		if got != c.want || known != c.known {
			t.Errorf("UnixMode(%#o) = %v, %v; want %v, %v", c.m, got, known, c.want, c.known)
		}
	}
}
