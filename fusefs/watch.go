package fusefs

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// seqFile is the repository file blockmap bumps on every catalog change.
const seqFile = "catalog.seq"

// seqWatch reports changes of <repo>/catalog.seq through inotify. Polling
// it costs one non-blocking read(2), cheap enough to do after every FUSE
// read. blockmap replaces the file with a rename, so the watch is on the
// repository directory.
type seqWatch struct {
	mu     sync.Mutex
	fd     int
	closed bool
}

func newSeqWatch(repoDir string) (*seqWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, repoDir, unix.IN_MOVED_TO|unix.IN_CREATE|unix.IN_MODIFY|unix.IN_DELETE_SELF); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("inotify watch %s: %w", repoDir, err)
	}
	return &seqWatch{fd: fd}, nil
}

// changed drains pending events and reports whether any of them touched
// catalog.seq (or whether events were lost). Safe for concurrent use.
func (w *seqWatch) changed() bool {
	var buf [4096]byte
	hit := false
	for {
		n, err := unix.Read(w.fd, buf[:])
		if n <= 0 || err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil && !errors.Is(err, unix.EAGAIN) {
				return true // closed or broken: make callers check the file itself
			}
			return hit
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameLen := int(ev.Len)
			end := off + unix.SizeofInotifyEvent + nameLen
			if end > n {
				break
			}
			name := buf[off+unix.SizeofInotifyEvent : end]
			name = bytes.TrimRight(name, "\x00")
			if ev.Mask&(unix.IN_Q_OVERFLOW|unix.IN_DELETE_SELF|unix.IN_IGNORED) != 0 || string(name) == seqFile {
				hit = true
			}
			off = end
		}
	}
}

func (w *seqWatch) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.closed = true
		unix.Close(w.fd)
	}
}
