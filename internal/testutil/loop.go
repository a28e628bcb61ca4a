package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Loop is a loop device attached to a file and pinned: Attach keeps it
// open until Detach, so a stray `losetup -d` of its name by another
// process (a test detaching a name twice, after the kernel gave it to
// us) only marks it for autoclear instead of taking it away in the
// middle of our work (an LVM fixture once saw its PV vanish that way:
// "VG vgp is missing PV ... last written to /dev/loop2"). Its identity is
// the backing file's device and inode and the offset, checked on the open
// device.
type Loop struct {
	// Dev is the device path, /dev/loopN.
	Dev string

	img      string
	off      int64
	dev, ino uint64
	mu       sync.Mutex
	f        *os.File
}

// LoopOptions are the losetup options Attach passes.
type LoopOptions struct {
	Offset, SizeLimit int64 // bytes; 0: whole file
	ReadOnly          bool
}

// AttachLoop attaches img to a free loop device (losetup --find), pins it
// and checks that the device it holds is img's: a device taken away
// between losetup and the open is attached again, up to 5 times. The
// device is detached when the test ends (if still img's). A missing loop
// device skips the test locally and fails it under CI.
func AttachLoop(t testing.TB, img string, o LoopOptions) *Loop {
	t.Helper()
	l, err := attachLoop(img, o)
	if err != nil {
		Missing(t, fmt.Sprintf("a loop device for %s: %v", img, err))
	}
	t.Cleanup(func() { l.Detach() })
	return l
}

func attachLoop(img string, o LoopOptions) (*Loop, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(img, &st); err != nil {
		return nil, err
	}
	args := []string{"--find", "--show"}
	if o.Offset > 0 {
		args = append(args, "--offset", strconv.FormatInt(o.Offset, 10))
	}
	if o.SizeLimit > 0 {
		args = append(args, "--sizelimit", strconv.FormatInt(o.SizeLimit, 10))
	}
	if o.ReadOnly {
		args = append(args, "--read-only")
	}
	var lastErr error
	for range 5 {
		out, err := exec.Command("losetup", append(args, img)...).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("losetup %s: %v: %s", img, err, strings.TrimSpace(string(out)))
		}
		l := &Loop{Dev: strings.TrimSpace(string(out)), img: img, off: o.Offset, dev: uint64(st.Dev), ino: st.Ino}
		if l.f, err = os.Open(l.Dev); err != nil {
			lastErr = err // detached and gone already: try another
			continue
		}
		if lastErr = l.check(); lastErr == nil {
			return l, nil
		}
		l.f.Close() // not ours (any more): leave it to its owner
	}
	return nil, fmt.Errorf("%s: no loop device stayed attached to it: %w", img, lastErr)
}

// check verifies, on the open device, that it is still img's at the
// offset asked for.
func (l *Loop) check() error {
	info, err := unix.IoctlLoopGetStatus64(int(l.f.Fd()))
	if err != nil {
		return fmt.Errorf("%s: %w", l.Dev, err)
	}
	if info.Device != l.dev || info.Inode != l.ino || int64(info.Offset) != l.off {
		return fmt.Errorf("%s backs inode %d of device %d at offset %d, not %s (another process detached it and reused the name)",
			l.Dev, info.Inode, info.Device, info.Offset, l.img)
	}
	return nil
}

// StrayDetached reports whether another process asked to detach the
// device while it was pinned (the kernel then set autoclear: it stays
// attached until the pin closes).
func (l *Loop) StrayDetached() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return false
	}
	info, err := unix.IoctlLoopGetStatus64(int(l.f.Fd()))
	return err == nil && info.Flags&unix.LO_FLAGS_AUTOCLEAR != 0
}

// Check reports whether the device is still img's (pinned, it stays so
// even when another process detaches its name).
func (l *Loop) Check() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return fmt.Errorf("%s: detached", l.Dev)
	}
	return l.check()
}

// Detach detaches the device through the pinned descriptor (so it is
// surely img's device, never a name the kernel has since given to
// someone else) and closes it; a device still open elsewhere (mounted)
// goes when that closes. Later calls do nothing.
func (l *Loop) Detach() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	var err error
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, l.f.Fd(), unix.LOOP_CLR_FD, 0); errno != 0 && errno != unix.ENXIO {
		err = fmt.Errorf("detach %s: %w", l.Dev, errno)
	}
	l.f.Close()
	l.f = nil
	return err
}
