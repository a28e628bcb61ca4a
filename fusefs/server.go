package fusefs

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/blockmap"
)

// fsType is the mount's file system type suffix: fuse.cairn.
const fsType = "cairn"

// maxRequest is the largest FUSE request the kernel sends (1 MiB).
const maxRequest = 1 << 20

// Server is a mounted repository.
type Server struct {
	dir    string
	srv    *fuse.Server
	t      *tree
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}
}

// Mount shows the repository at dir (an existing, empty, unmounted
// directory) and serves it until Unmount or an external unmount. ctx
// bounds only the mounting itself.
func Mount(ctx context.Context, repo *blockmap.Repo, dir string, opts Options) (*Server, error) {
	return MountSource(ctx, repoSource{repo}, dir, opts)
}

// MountSource mounts any Source (a remote, for one) at dir, as Mount does
// a repository.
func MountSource(ctx context.Context, repo Source, dir string, opts Options) (*Server, error) {
	opts = opts.withDefaults()
	if opts.BootChecksDir == "" {
		opts.BootChecksDir = filepath.Join(repo.Dir(), "bootchecks")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("mount point %s: %w", dir, err)
	}
	if err := CheckMountPoint(abs); err != nil {
		return nil, err
	}
	life, cancel := context.WithCancel(context.WithoutCancel(ctx))
	t := &tree{ctx: life, repo: repo, opts: opts, log: opts.Logger, uid: uint32(os.Getuid()), gid: uint32(os.Getgid()),
		fsNodes: map[readerKey]*fsEntry{}}
	t.cat = newCatalogCache(life, repo, t.log, opts.CatalogPoll)
	t.cat.onChange = t.catalogChanged
	t.readers = newReaderCache(life, repo, t.log, opts.MaxReaders, opts.ReaderMemory)
	t.around = newReadAround(repo.BlockSize())
	if err := t.cat.load(); err != nil {
		cancel()
		t.cat.close()
		return nil, fmt.Errorf("mount %s: %w", abs, err)
	}
	t.root = &rootNode{t: t}

	fopts := &gofs.Options{
		// No default timeouts: every node sets its own, and go-fuse would
		// replace a deliberate zero (the root and VM directories) with
		// the default.
		// Guest files keep mode 0000 (go-fuse would show 0644/0755);
		// every node of the tree sets its own permissions.
		NullPermissions: true,
		// The root is inode 1 (stat, and "." in its listing), not 0:
		// a directory entry of inode 0 is one no reader shows.
		RootStableAttr: &gofs.StableAttr{Ino: fuse.FUSE_ROOT_ID},
		UID:            t.uid,
		GID:            t.gid,
		Logger:         log.New(slogWriter{t.log, slog.LevelWarn}, "", 0),
		MountOptions: fuse.MountOptions{
			AllowOther:   opts.AllowOther,
			FsName:       fsType,
			Name:         fsType,
			MaxWrite:     maxRequest,
			MaxReadAhead: maxRequest,
			// A few more background requests than the default 12 keep
			// readahead and parallel readers busy.
			MaxBackground: 64,
			// Splice needs pipes larger than the 1 MiB requests and gave no
			// gain over plain data (NOTES.md).
			DisableSplice: true,
			// Guest files answer listxattr/getxattr with their own extended
			// attributes (fusefs/guest); other nodes have none.
			DisableXAttrs: false,
			// Paths through latest/ resolve the link on every lookup;
			// cached targets are invalidated when a VM's newest point changes.
			EnableSymlinkCaching: true,
			Debug:                opts.Debug,
			// Request tracing (Debug) and go-fuse's own notices.
			Logger: log.New(slogWriter{t.log, slog.LevelInfo}, "fuse: ", 0),
			PanicHandler: func(r any) fuse.Status {
				t.log.Error("panic in a FUSE request (answered EIO)", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				return fuse.EIO
			},
		},
	}
	if os.Geteuid() == 0 {
		fopts.DirectMountStrict = true
		fopts.DirectMountFlags = syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_RDONLY
	} else {
		fopts.MountOptions.Options = append(fopts.MountOptions.Options, "ro")
	}
	srv, err := serve(abs, t.root, fopts)
	if err != nil {
		cancel()
		t.cat.close()
		return nil, fmt.Errorf("mount %s: %w", abs, err)
	}
	go t.watchCatalog()
	s := &Server{dir: abs, srv: srv, t: t, log: t.log, cancel: cancel, done: make(chan struct{})}
	if opts.ReadAheadKB > 0 {
		if err := setReadAhead(abs, opts.ReadAheadKB); err != nil {
			t.log.Debug("cannot raise the mount's readahead; sequential reads use 128 KiB requests", "err", err)
		}
	}
	go func() {
		srv.Wait()
		cancel()
		t.readers.closeAll()
		t.cat.close()
		close(s.done)
	}()
	return s, nil
}

// serve mounts the node tree at dir like gofs.Mount, with directories
// opened without OPENDIR requests (noOpendirFS).
func serve(dir string, root gofs.InodeEmbedder, opts *gofs.Options) (*fuse.Server, error) {
	srv, err := fuse.NewServer(newNoOpendirFS(gofs.NewNodeFS(root, opts)), dir, &opts.MountOptions)
	if err != nil {
		return nil, err
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		// As gofs.Mount: the serve loop ends by itself when the mount failed.
		return nil, err
	}
	return srv, nil
}

// Dir is the mount point.
func (s *Server) Dir() string { return s.dir }

// Done is closed when the mount has ended (by Unmount or an external
// unmount such as `cairn umount` or fusermount3 -u).
func (s *Server) Done() <-chan struct{} { return s.done }

// Wait blocks until the mount has ended.
func (s *Server) Wait() { <-s.done }

// Unmount unmounts. When files are still open it returns an error
// wrapping ErrBusy and leaves the mount in place, unless lazy is set: then
// it detaches the mount (umount2 MNT_DETACH) so that it disappears from
// the namespace at once, while open files keep working until they are
// closed or grace has passed, whichever is first. It returns when the
// server has stopped (or after grace, for a detached busy mount).
func (s *Server) Unmount(lazy bool, grace time.Duration) error {
	select {
	case <-s.done:
		return nil
	default:
	}
	err := Unmount(s.dir, false)
	if err == nil {
		s.Wait()
		return nil
	}
	if !lazy || !errors.Is(err, ErrBusy) {
		return err
	}
	s.log.Warn("mount point busy: files are still open; detaching it (open files keep working until closed)", "dir", s.dir, "grace", grace)
	if err := Unmount(s.dir, true); err != nil {
		return err
	}
	select {
	case <-s.done:
	case <-time.After(grace):
		s.log.Warn("files of the detached mount are still open; stopping anyway (their reads now fail)", "dir", s.dir)
	}
	return nil
}

// Unmount unmounts the FUSE mount at dir: with umount2 as root, with
// fusermount3 -u otherwise. lazy detaches a busy mount (MNT_DETACH, -z).
// A busy mount gives an error wrapping ErrBusy; a directory with nothing
// mounted gives ErrNotMounted.
func Unmount(dir string, lazy bool) error {
	mi, mounted, err := FindMount(dir)
	if err != nil {
		return err
	}
	if !mounted {
		return fmt.Errorf("%s: %w", dir, ErrNotMounted)
	}
	if !strings.HasPrefix(mi.FSType, "fuse") {
		return fmt.Errorf("%s: %s is mounted there, not a cairn FUSE mount; refusing to unmount it", dir, mi.FSType)
	}
	if os.Geteuid() == 0 {
		flags := 0
		if lazy {
			flags = unix.MNT_DETACH
		}
		for try := 0; ; try++ {
			err = unix.Unmount(mi.Dir, flags)
			if err == nil {
				return nil
			}
			// The kernel may still be releasing files that were just closed.
			if !errors.Is(err, unix.EBUSY) || try == 4 {
				break
			}
			time.Sleep(time.Duration(10<<try) * time.Millisecond)
		}
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("unmount %s: %w: files are open there (see `fuser -vm %s`)", dir, ErrBusy, dir)
		}
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	args := []string{"-u"}
	if lazy {
		args = append(args, "-z")
	}
	bin, lerr := exec.LookPath("fusermount3")
	if lerr != nil {
		bin = "fusermount"
	}
	out, err := exec.Command(bin, append(args, mi.Dir)...).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if strings.Contains(msg, "busy") {
			return fmt.Errorf("unmount %s: %w: %s", dir, ErrBusy, msg)
		}
		return fmt.Errorf("unmount %s: %s: %w", dir, msg, err)
	}
	return nil
}

// setReadAhead raises the readahead of the mount's backing device so the
// kernel sends 1 MiB reads instead of 128 KiB ones, several at a time.
// (MaxReadAhead only lowers it: the kernel starts the mount at 128 KiB.)
func setReadAhead(dir string, kb int) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return err
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	return os.WriteFile(p, []byte(fmt.Sprintf("%d\n", kb)), 0o644)
}

// slogWriter turns go-fuse's log.Logger lines into slog records.
type slogWriter struct {
	log   *slog.Logger
	level slog.Level
}

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Log(context.Background(), w.level, strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// watchCatalog checks the catalog every poll interval while the mount
// lives, so that changes reach the kernel's caches (the latest links'
// cached targets, entries of deleted points) even when nobody lists a
// directory.
func (t *tree) watchCatalog() {
	tick := time.NewTicker(t.opts.CatalogPoll)
	defer tick.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-tick.C:
			t.cat.current()
		}
	}
}
