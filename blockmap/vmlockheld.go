package blockmap

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// vmLockHeld reports whether some process holds vm's lock now, without
// taking it (a try-lock would make a writer starting at that moment fail
// as "in use"): it looks the lock file's inode up in /proc/locks. A copy
// of a repository has other inodes, so the writers of the original are
// not taken for writers of the copy.
func (r *Repo) vmLockHeld(vm string) bool {
	var st unix.Stat_t
	if err := unix.Stat(r.vmLockPath(vm), &st); err != nil {
		return false
	}
	f, err := os.Open("/proc/locks")
	if err != nil {
		return false
	}
	defer f.Close()
	id := fmt.Sprintf("%02x:%02x:%d", unix.Major(uint64(st.Dev)), unix.Minor(uint64(st.Dev)), st.Ino)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "1: FLOCK  ADVISORY  WRITE 3033 fe:00:10184185 0 EOF"; a
		// waiter's line starts "1: -> FLOCK ...".
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] == "->" || fields[1] != "FLOCK" {
			continue
		}
		if fields[5] == id {
			return true
		}
	}
	return false
}
