package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/fusefs"
	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/fsopen"
	"github.com/cairnbackup/cairn/partinfo/volumes"
)

// timeout is how long the kernel may cache names and attributes: the
// content of a recovery point never changes.
const timeout = time.Hour

// Provider returns the fusefs.FSProvider that shows partitions and guest
// filesystems. Errors inside a reader are logged with the point, disk and
// partition and answered with EIO. Its volumes have their own bound of
// DefaultMaxOpen open filesystems; a mount should use one Guests for both
// providers instead.
func Provider(log *slog.Logger) fusefs.FSProvider {
	return New(log, 0).FSProvider()
}

// FSProvider returns the fusefs.FSProvider of g (see Provider).
func (g *Guests) FSProvider() fusefs.FSProvider {
	log, set := g.log, g.set
	volumes := new(atomic.Uint64)
	return func(ctx context.Context, src fusefs.DiskSource) (gofs.InodeEmbedder, error) {
		d, err := newDiskDir(src, log)
		if d != nil {
			d.volumes = volumes
			d.set = set
		}
		return d, err
	}
}

// diskDir is fs/<disk>: one directory per volume.
type diskDir struct {
	gofs.Inode
	fusefs.ReadOnly
	src     fusefs.DiskSource
	log     *slog.Logger
	vols    []volumes.Volume
	volumes *atomic.Uint64 // per-mount counter that keeps inode numbers apart
	set     *openSet       // the mount's bound on open filesystems
}

func newDiskDir(src fusefs.DiskSource, log *slog.Logger) (*diskDir, error) {
	vols, t, err := volumes.OfDisk(src.Reader, src.Size)
	if err != nil {
		return nil, err
	}
	if t.DynamicDisk {
		return nil, errors.New("This disk is a Windows dynamic disk (LDM). Its volumes are assembled across the VM's disks under fs/ldm/<volume>/ of this point (fs/ldm/ERROR.txt says what kept a volume from being assembled).")
	}
	if len(vols) == 0 {
		return nil, errors.New("This disk has a partition table with no partitions: there is nothing to browse. The raw image is in disks/.")
	}
	return &diskDir{src: src, log: log, vols: vols}, nil
}

var (
	_ gofs.NodeLookuper       = (*diskDir)(nil)
	_ gofs.NodeReaddirer      = (*diskDir)(nil)
	_ gofs.NodeGetattrer      = (*diskDir)(nil)
	_ gofs.NodeOnAdder        = (*diskDir)(nil)
	_ gofs.NodeStatfser       = (*diskDir)(nil)
	_ gofs.NodeOpendirHandler = (*diskDir)(nil)
	_ gofs.NodeSetattrer      = (*diskDir)(nil)
	_ gofs.NodeCreater        = (*diskDir)(nil)
	_ gofs.NodeMkdirer        = (*diskDir)(nil)
	_ gofs.NodeUnlinker       = (*diskDir)(nil)
	_ gofs.NodeRmdirer        = (*diskDir)(nil)
	_ gofs.NodeRenamer        = (*diskDir)(nil)
	_ gofs.NodeSymlinker      = (*diskDir)(nil)
	_ gofs.NodeLinker         = (*diskDir)(nil)
	_ gofs.NodeMknoder        = (*diskDir)(nil)
	_ gofs.NodeSetxattrer     = (*diskDir)(nil)
)

func (d *diskDir) OnAdd(ctx context.Context) {
	for _, v := range d.vols {
		vd := &volumeDir{src: d.src, log: d.log, vol: v, salt: inoSalt(d.volumes), set: d.set}
		d.AddChild(v.Name, d.NewPersistentInode(ctx, vd, gofs.StableAttr{Mode: syscall.S_IFDIR}), false)
	}
}

func (d *diskDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ch := d.GetChild(name)
	if ch == nil {
		return nil, syscall.ENOENT
	}
	// A volume directory is its filesystem's root directory: the entry
	// carries the root inode's attributes, not made-up ones.
	var a fuse.AttrOut
	if vd, ok := ch.Operations().(*volumeDir); ok && vd.Getattr(ctx, nil, &a) == 0 {
		out.Attr = a.Attr
	} else {
		dirAttr(&out.Attr, d.src.Point.Time)
	}
	out.SetEntryTimeout(timeout)
	out.SetAttrTimeout(timeout)
	return ch, 0
}

func (d *diskDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	var es []fuse.DirEntry
	for _, v := range d.vols {
		es = append(es, fuse.DirEntry{Name: v.Name, Mode: syscall.S_IFDIR})
	}
	return gofs.NewListDirStream(fusefs.ChildInos(&d.Inode, es)), 0
}

func (d *diskDir) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	var es []fuse.DirEntry
	for _, v := range d.vols {
		es = append(es, fuse.DirEntry{Name: v.Name, Mode: syscall.S_IFDIR})
	}
	return fusefs.OpenCachedDir(&d.Inode, fusefs.ChildInos(&d.Inode, es))
}

func (d *diskDir) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	dirAttr(&out.Attr, d.src.Point.Time)
	out.SetTimeout(timeout)
	return 0
}

func (d *diskDir) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno { return 0 }

func dirAttr(a *fuse.Attr, t time.Time) {
	a.Mode = syscall.S_IFDIR | 0o555
	a.Nlink = 2
	a.SetTimes(&t, &t, &t)
}

// volumeDir is fs/<disk>/<volume>: the filesystem's root directory, or a
// directory with ERROR.txt. The filesystem is opened on first use.
type volumeDir struct {
	gofs.Inode
	fusefs.ReadOnly
	src  fusefs.DiskSource
	log  *slog.Logger
	vol  volumes.Volume
	salt uint64

	set *openSet // the mount's bound on open filesystems
	// st is the opened filesystem (nil before the first use and after
	// the set closed it), guarded by set.mu; err is why the volume does
	// not open, set once (at build time or by the first open) and never
	// changed; root is its root directory once it opened.
	st     *volState
	openMu sync.Mutex // serialises opening
	err    error
	root   *guestNode
	// openFS, when set, opens a filesystem that lies across several
	// devices (a btrfs of several disks) instead of src.Reader's.
	openFS func() (partinfo.Filesystem, error)

	errOnce sync.Once
	errNode *gofs.Inode // ERROR.txt of a volume that does not open
}

var (
	_ gofs.NodeLookuper       = (*volumeDir)(nil)
	_ gofs.NodeReaddirer      = (*volumeDir)(nil)
	_ gofs.NodeGetattrer      = (*volumeDir)(nil)
	_ gofs.NodeOpendirHandler = (*volumeDir)(nil)
)

func (v *volumeDir) where() []any {
	return []any{"vm", v.src.Point.VM, "point", v.src.Point.ID, "disk", v.src.Disk.Name, "partition", v.vol.Name}
}

// acquire returns the opened volume for one request, opening it on first
// use and again after the set closed it; release gives it back. A volume
// that does not open returns nil and 0 (v.err says why). fsopen.Open is
// the reader boundary: a reader's panic comes back as an error (ERROR.txt).
func (v *volumeDir) acquire() (*volState, syscall.Errno) {
	s := v.set
	if s == nil {
		s = &openSet{max: DefaultMaxOpen}
		v.set = s
	}
	v.openMu.Lock()
	defer v.openMu.Unlock()
	s.mu.Lock()
	if v.err != nil {
		s.mu.Unlock()
		return nil, 0
	}
	if st := v.st; st != nil {
		st.users++
		s.lru.MoveToFront(st.elem)
		s.mu.Unlock()
		return st, 0
	}
	s.mu.Unlock()
	// The reader's small reads come from cached 64 KiB chunks.
	var fsys partinfo.Filesystem
	var chunks *chunkCache
	var err error
	if v.openFS != nil {
		fsys, err = v.openFS()
	} else {
		chunks = newChunkCache(v.src.Reader, v.src.Size)
		fsys, err = fsopen.Open(chunks, v.vol.Offset, v.vol.Size, v.vol.Detection)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil && v.root != nil {
		// It opened before: the same bytes failing now is a read error.
		v.log.Error("guest filesystem read failed", append(v.where(), "op", "reopen", "err", err)...)
		return nil, syscall.EIO
	}
	if err != nil {
		var ue *partinfo.UnreadableError
		if !errors.As(err, &ue) {
			err = fmt.Errorf("This volume holds %s, but cairn could not open it: %v\nThe raw disk image is in disks/; attach it to a machine that can repair or read it.", describe(v.vol.Detection), err)
			v.log.Warn("cannot open guest filesystem", append(v.where(), "type", v.vol.Detection.Type, "err", err)...)
		}
		v.err = err
		return nil, 0
	}
	if v.root == nil {
		v.root = &guestNode{vol: v, ino: fsys.Root(), salt: v.salt, log: v.log, where: v.where()}
	}
	st := &volState{fs: fsys, cache: newDirCacheFor(v.vol.Detection.Type), chunks: chunks, users: 1}
	st.elem = s.lru.PushFront(v)
	v.st = st
	s.evict()
	return st, 0
}

// release ends a request's use of st and closes the least recently used
// idle volumes beyond the bound.
func (v *volumeDir) release(st *volState) {
	if st == nil {
		return
	}
	s := v.set
	s.mu.Lock()
	st.users--
	if st.users == 0 {
		s.evict()
	}
	s.mu.Unlock()
}

func describe(d partinfo.Detection) string {
	if d.Type == "" || d.Type == partinfo.TypeUnknown {
		return "data cairn does not recognise"
	}
	return "a " + d.Type + " filesystem"
}

// errorNode is ERROR.txt of a volume that does not open: one persistent
// child, so that its inode number is listed and stays (ls -i).
func (v *volumeDir) errorNode(ctx context.Context) *gofs.Inode {
	v.errOnce.Do(func() {
		text := []byte(v.errorText())
		f := &gofs.MemRegularFile{Data: text, Attr: fuse.Attr{Mode: 0o444, Nlink: 1}}
		t := v.src.Point.Time
		f.Attr.SetTimes(&t, &t, &t)
		v.errNode = v.NewPersistentInode(ctx, f, gofs.StableAttr{Mode: syscall.S_IFREG})
		v.AddChild(fusefs.ErrorFileName, v.errNode, false)
	})
	return v.errNode
}

// errorEntries lists a volume that does not open: ERROR.txt alone.
func (v *volumeDir) errorEntries(ctx context.Context) []fuse.DirEntry {
	return []fuse.DirEntry{{Name: fusefs.ErrorFileName, Mode: syscall.S_IFREG, Ino: v.errorNode(ctx).StableAttr().Ino}}
}

func (v *volumeDir) errorText() string {
	msg := v.err.Error()
	if !strings.HasSuffix(msg, "\n") {
		msg += "\n"
	}
	return msg
}

// open opens the volume if it is not open (v.err says when it does not).
func (v *volumeDir) open() syscall.Errno {
	st, errno := v.acquire()
	v.release(st)
	return errno
}

func (v *volumeDir) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if errno := v.open(); errno != 0 {
		return errno
	}
	if v.err != nil {
		dirAttr(&out.Attr, v.src.Point.Time)
		out.SetTimeout(timeout)
		return 0
	}
	if errno := v.root.getattr(out); errno != 0 {
		return errno
	}
	out.Ino = 0 // the volume directory keeps its own inode number
	return 0
}

func (v *volumeDir) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if errno := v.open(); errno != 0 {
		return nil, 0, errno
	}
	if v.err != nil {
		return fusefs.OpenCachedDir(&v.Inode, v.errorEntries(ctx))
	}
	return v.root.openDir(&v.Inode)
}

func (v *volumeDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	if errno := v.open(); errno != 0 {
		return nil, errno
	}
	if v.err != nil {
		return gofs.NewListDirStream(v.errorEntries(ctx)), 0
	}
	return v.root.readdir()
}

func (v *volumeDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := v.open(); errno != 0 {
		return nil, errno
	}
	if v.err != nil {
		if name != fusefs.ErrorFileName {
			return nil, syscall.ENOENT
		}
		ch := v.errorNode(ctx)
		t := v.src.Point.Time
		out.Attr.Mode = syscall.S_IFREG | 0o444
		out.Attr.Nlink = 1
		out.Attr.Size = uint64(len(v.errorText()))
		out.Attr.SetTimes(&t, &t, &t)
		out.SetEntryTimeout(timeout)
		out.SetAttrTimeout(timeout)
		return ch, 0
	}
	return v.root.lookupIn(ctx, &v.Inode, name, out)
}

// guestNode is a file, directory, symlink or special file of a guest
// filesystem. Its methods turn reader errors into EIO and log them. It
// reaches the filesystem through its volume for each request (use), so
// that the mount's open set may close the volume between requests.
type guestNode struct {
	gofs.Inode
	fusefs.ReadOnly
	vol   *volumeDir
	ino   uint64
	salt  uint64
	log   *slog.Logger
	where []any
	xc    xattrCache
}

// use returns the opened volume for one request; release it with
// n.vol.release.
func (n *guestNode) use() (*volState, syscall.Errno) {
	st, errno := n.vol.acquire()
	if errno == 0 && st == nil {
		errno = syscall.EIO // opened before: cannot happen
	}
	return st, errno
}

var (
	_ gofs.NodeLookuper       = (*guestNode)(nil)
	_ gofs.NodeReaddirer      = (*guestNode)(nil)
	_ gofs.NodeGetattrer      = (*guestNode)(nil)
	_ gofs.NodeOpener         = (*guestNode)(nil)
	_ gofs.NodeReader         = (*guestNode)(nil)
	_ gofs.NodeReadlinker     = (*guestNode)(nil)
	_ gofs.NodeLseeker        = (*guestNode)(nil)
	_ gofs.NodeOpendirHandler = (*guestNode)(nil)
)

func (n *guestNode) fail(op string, err error) syscall.Errno {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, partinfo.ErrNotDir):
		return syscall.ENOTDIR
	case errors.Is(err, partinfo.ErrNotSymlink), errors.Is(err, partinfo.ErrNotRegular):
		return syscall.EINVAL
	}
	n.log.Error("guest filesystem read failed", append(append([]any{}, n.where...), "op", op, "inode", n.ino, "err", err)...)
	return syscall.EIO
}

// goModeToSys converts a Go file mode to the st_mode bits.
func goModeToSys(m fs.FileMode) uint32 {
	mode := uint32(m.Perm())
	switch {
	case m&fs.ModeDir != 0:
		mode |= syscall.S_IFDIR
	case m&fs.ModeSymlink != 0:
		mode |= syscall.S_IFLNK
	case m&fs.ModeNamedPipe != 0:
		mode |= syscall.S_IFIFO
	case m&fs.ModeSocket != 0:
		mode |= syscall.S_IFSOCK
	case m&fs.ModeCharDevice != 0:
		mode |= syscall.S_IFCHR
	case m&fs.ModeDevice != 0:
		mode |= syscall.S_IFBLK
	default:
		mode |= syscall.S_IFREG
	}
	if m&fs.ModeSetuid != 0 {
		mode |= syscall.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		mode |= syscall.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		mode |= syscall.S_ISVTX
	}
	return mode
}

// inoSalt gives each opened volume of a mount its own range of inode
// numbers: the same guest inode number in two partitions or two points is
// two different files. Automatic go-fuse numbers have the top bit set.
func inoSalt(counter *atomic.Uint64) uint64 {
	if counter == nil {
		counter = new(atomic.Uint64)
	}
	return (counter.Add(1) & 0x7fff) << 48
}

// mountIno is the inode number a guest inode has in the mount.
func mountIno(salt, ino uint64) uint64 { return salt | ino&(1<<48-1) }

func fillAttr(out *fuse.Attr, a partinfo.Attr, salt uint64) {
	out.Ino = mountIno(salt, a.Ino)
	out.Mode = goModeToSys(a.Mode)
	out.Size = uint64(max(a.Size, 0))
	out.Blocks = uint64(max(a.Blocks, 0))
	out.Nlink = max(a.Nlink, 1)
	out.Uid, out.Gid = a.Uid, a.Gid
	out.Rdev = a.Rdev
	out.Blksize = 4096
	out.SetTimes(&a.Atime, &a.Mtime, &a.Ctime)
}

func (n *guestNode) getattr(out *fuse.AttrOut) syscall.Errno {
	st, errno := n.use()
	if errno != 0 {
		return errno
	}
	defer n.vol.release(st)
	a, err := st.fs.Stat(n.ino)
	if err != nil {
		return n.fail("stat", err)
	}
	fillAttr(&out.Attr, a, n.salt)
	out.SetTimeout(timeout)
	return 0
}

func (n *guestNode) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	return n.getattr(out)
}

// entries lists the directory for FUSE (mount inode numbers) and fills
// the lookup cache with the guest inode numbers.
func (n *guestNode) entries(st *volState) ([]fuse.DirEntry, syscall.Errno) {
	entries, ok := st.cache.ahead.take(n.ino)
	if !ok {
		var err error
		if entries, err = st.fs.ReadDir(n.ino); err != nil {
			return nil, n.fail("readdir", err)
		}
	}
	st.cache.ahead.ahead(st.fs, entries)
	out := make([]fuse.DirEntry, 0, len(entries))
	guest := make([]fuse.DirEntry, 0, len(entries))
	for _, e := range entries {
		out = append(out, fuse.DirEntry{Name: e.Name, Ino: mountIno(n.salt, e.Ino), Mode: goModeToSys(e.Type) &^ 0o7777})
		guest = append(guest, fuse.DirEntry{Name: e.Name, Ino: e.Ino})
	}
	st.cache.put(n.ino, guest)
	return out, 0
}

func (n *guestNode) readdir() (gofs.DirStream, syscall.Errno) {
	st, errno := n.use()
	if errno != 0 {
		return nil, errno
	}
	defer n.vol.release(st)
	out, errno := n.entries(st)
	if errno != 0 {
		return nil, errno
	}
	return gofs.NewListDirStream(out), 0
}

func (n *guestNode) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return n.openDir(&n.Inode)
}

// openDir opens the directory n, which is parent in the mount's tree (the
// volume directory for a filesystem's root). The listing starts with "."
// and ".." as the mount reports them (parent's inode number and its
// parent's: for a filesystem's root the volume directory and the disk's
// directory in fs/).
func (n *guestNode) openDir(parent *gofs.Inode) (gofs.FileHandle, uint32, syscall.Errno) {
	st, errno := n.use()
	if errno != 0 {
		return nil, 0, errno
	}
	defer n.vol.release(st)
	out, errno := n.entries(st)
	if errno != 0 {
		return nil, 0, errno
	}
	files := 0
	for _, e := range out {
		if e.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			files++
		}
	}
	if !st.cache.mode.bare(n.ino, files) {
		return fusefs.OpenCachedDir(parent, out)
	}
	return fusefs.OpenCachedDirLookup(parent, out, func(ctx context.Context, e fuse.DirEntry, eo *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
		if e.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			return nil, syscall.ENOENT // bare: no attributes, no inode (bareentries.go)
		}
		return n.lookup(ctx, parent, e.Name, eo)
	})
}

func (n *guestNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) { return n.readdir() }

func (n *guestNode) lookup(ctx context.Context, parent *gofs.Inode, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	st, errno := n.use()
	if errno != 0 {
		return nil, errno
	}
	defer n.vol.release(st)
	return n.lookupWith(ctx, st, parent, name, out)
}

func (n *guestNode) lookupWith(ctx context.Context, st *volState, parent *gofs.Inode, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if ch := parent.GetChild(name); ch != nil {
		if g, ok := ch.Operations().(*guestNode); ok {
			if a, err := st.fs.Stat(g.ino); err == nil {
				fillAttr(&out.Attr, a, g.salt)
				out.SetEntryTimeout(timeout)
				out.SetAttrTimeout(timeout)
				return ch, 0
			}
		}
	}
	ino, found, known := st.cache.lookup(n.ino, name)
	if known && !found {
		return nil, syscall.ENOENT
	}
	if !known {
		var err error
		if ino, err = st.fs.Lookup(n.ino, name); err != nil {
			return nil, n.fail("lookup", err)
		}
	}
	a, err := st.fs.Stat(ino)
	if err != nil {
		return nil, n.fail("stat", err)
	}
	fillAttr(&out.Attr, a, n.salt)
	out.SetEntryTimeout(timeout)
	out.SetAttrTimeout(timeout)
	child := &guestNode{vol: n.vol, ino: ino, salt: n.salt, log: n.log, where: n.where}
	// The guest inode number keeps hard links one inode in the mount.
	return parent.NewInode(ctx, child, gofs.StableAttr{Mode: out.Attr.Mode &^ 0o7777, Ino: mountIno(n.salt, ino)}), 0
}

func (n *guestNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return n.lookupIn(ctx, &n.Inode, name, out)
}

// lookupIn answers a LOOKUP of name in the directory n, which is parent
// in the mount's tree, and tells the entry mode of a file looked up.
func (n *guestNode) lookupIn(ctx context.Context, parent *gofs.Inode, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	st, errno := n.use()
	if errno != 0 {
		return nil, errno
	}
	defer n.vol.release(st)
	ch, errno := n.lookupWith(ctx, st, parent, name, out)
	if errno == 0 && out.Attr.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		st.cache.mode.lookedUp(n.ino)
	}
	return ch, errno
}

func (n *guestNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if errno := fusefs.ReadOnlyOpen(flags); errno != 0 {
		return nil, 0, errno
	}
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}

func (n *guestNode) Read(ctx context.Context, f gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	st, errno := n.use()
	if errno != 0 {
		return nil, errno
	}
	defer n.vol.release(st)
	m, err := st.fs.ReadAt(n.ino, dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, n.fail("read", err)
	}
	if off == 0 {
		n.storeAhead(st)
	}
	return fuse.ReadResultData(dest[:m]), 0
}

func (n *guestNode) Lseek(ctx context.Context, f gofs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	var pos int64
	var err error
	st, errno := n.use()
	if errno != 0 {
		return 0, errno
	}
	defer n.vol.release(st)
	switch whence {
	case unix.SEEK_DATA:
		pos, err = st.fs.SeekData(n.ino, int64(off))
	case unix.SEEK_HOLE:
		pos, err = st.fs.SeekHole(n.ino, int64(off))
	default:
		return 0, syscall.EINVAL
	}
	if errors.Is(err, partinfo.ErrNoData) {
		return 0, syscall.ENXIO
	}
	if err != nil {
		return 0, n.fail("lseek", err)
	}
	return uint64(pos), 0
}

func (n *guestNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	st, errno := n.use()
	if errno != 0 {
		return nil, errno
	}
	defer n.vol.release(st)
	target, err := st.fs.Readlink(n.ino)
	if err != nil {
		return nil, n.fail("readlink", err)
	}
	return []byte(target), 0
}
