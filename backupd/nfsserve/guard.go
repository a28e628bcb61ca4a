package nfsserve

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"

	"github.com/go-git/go-billy/v5"
	"golang.org/x/sys/unix"
)

// This file holds what keeps an export's clients inside their bounds:
// the allow list (who may connect), the check of every RPC call before
// go-nfs decodes it (lengths that would make it allocate gigabytes), the
// refusal of symbolic links in the scratch directory, and the free-space
// reserve of scratch writes. docs/security.md lists the findings.

// ErrNotAllowed means a client's address is not in the export's allow
// list.
var ErrNotAllowed = errors.New("client address not in the allow list")

// Loopback is the allow list used when none is given: this machine only.
var Loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// ParseAllow reads an allow list: addresses (10.0.0.5, fe80::1) and
// networks (10.0.0.0/24); "any" allows every address.
func ParseAllow(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		switch {
		case s == "any":
			out = append(out, netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0"))
		default:
			if p, err := netip.ParsePrefix(s); err == nil {
				out = append(out, p.Masked())
				continue
			}
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("allow %q: not an address or ADDR/BITS network (give e.g. 10.0.0.5, 10.0.0.0/24 or any)", s)
			}
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out, nil
}

// AllowList is who may connect to an export: addresses and networks,
// Loopback when empty. It may be changed while the export serves (Set);
// a nil *AllowList is Loopback.
type AllowList struct {
	mu sync.RWMutex
	p  []netip.Prefix
}

// NewAllowList returns an allow list of p (ParseAllow).
func NewAllowList(p []netip.Prefix) *AllowList {
	return &AllowList{p: append([]netip.Prefix(nil), p...)}
}

// Set replaces the list (empty: Loopback). Connections already taken
// stay.
func (a *AllowList) Set(p []netip.Prefix) {
	a.mu.Lock()
	a.p = append([]netip.Prefix(nil), p...)
	a.mu.Unlock()
}

// Prefixes are the list's prefixes (empty: Loopback applies).
func (a *AllowList) Prefixes() []netip.Prefix {
	if a == nil {
		return nil
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	return append([]netip.Prefix(nil), a.p...)
}

// String lists the prefixes.
func (a *AllowList) String() string {
	var p []netip.Prefix
	if a != nil {
		a.mu.RLock()
		p = a.p
		a.mu.RUnlock()
	}
	if len(p) == 0 {
		p = Loopback
	}
	return fmt.Sprint(p)
}

// Allows reports whether addr (a TCP or UDP address) may connect.
func (a *AllowList) Allows(addr net.Addr) bool {
	var allow []netip.Prefix
	if a != nil {
		a.mu.RLock()
		allow = a.p
		a.mu.RUnlock()
	}
	if len(allow) == 0 {
		allow = Loopback
	}
	var ap netip.AddrPort
	switch a := addr.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	default:
		return false
	}
	ip := ap.Addr().Unmap()
	for _, p := range allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// guardListener accepts only clients of the allow list, and checks each
// of their RPC calls (guardConn) before go-nfs reads it.
type guardListener struct {
	net.Listener
	allow *AllowList
	log   *slog.Logger
	mu    sync.Mutex
	conns int
}

// MaxConns is how many NFS connections one export takes at once (an ESXi
// host opens one per datastore, or a few with nConnect); more are
// disconnected at once.
const MaxConns = 64

func (l *guardListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !l.allow.Allows(c.RemoteAddr()) {
			l.log.Warn("nfs export: refused a client not in the allow list (--allow)", "client", c.RemoteAddr().String())
			c.Close()
			continue
		}
		l.mu.Lock()
		full := l.conns >= MaxConns
		if !full {
			l.conns++
		}
		l.mu.Unlock()
		if full {
			l.log.Warn("nfs export: refused a client: too many connections", "client", c.RemoteAddr().String(), "max", MaxConns)
			c.Close()
			continue
		}
		return &guardConn{Conn: c, r: bufio.NewReaderSize(c, 64<<10), log: l.log, l: l}, nil
	}
}

// Bounds of one RPC call (RFC 5531, RFC 1813).
const (
	maxRecord   = MaxRecord
	maxAuthBody = 400  // opaque_auth body
	maxFH       = 64   // NFS3_FHSIZE
	maxName     = 255  // a file name
	maxPath     = 1024 // MNTPATHLEN, a symlink target
	prefixLen   = 8192 // what is checked of a call before it is passed on
)

// MaxRecord is the largest RPC record (one call) an export takes: a WRITE
// of 16 MiB (go-nfs's largest READ) and its header. A client sending a
// longer one is disconnected.
const MaxRecord = 16<<20 + 64<<10

// errBadCall is a call refused before go-nfs decodes it.
var errBadCall = errors.New("malformed RPC call")

// guardConn passes a client's RPC records on to go-nfs only after the
// start of each (its header and arguments, up to the data of a WRITE) is
// checked: every length in it must fit the record and the protocol's
// bounds. go-nfs allocates what a length field says before it reads the
// bytes, so a 44-byte call claiming a 4 GiB handle would otherwise make
// the appliance allocate 4 GiB.
type guardConn struct {
	net.Conn
	r    *bufio.Reader
	log  *slog.Logger
	buf  []byte // checked bytes not yet passed on (in pre)
	pre  []byte
	rest int64 // bytes of the current record after buf, passed on unread
	err  error
	l    *guardListener
	once sync.Once
}

// Close ends the connection and frees its place (MaxConns).
func (c *guardConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.conns--
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

func (c *guardConn) Read(p []byte) (int, error) {
	n, err := c.read(p)
	if err != nil {
		c.Close() // go-nfs leaves a connection open on errors other than EOF
	}
	return n, err
}

func (c *guardConn) read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	if c.rest > 0 {
		n, err := c.r.Read(p[:min(int64(len(p)), c.rest)])
		c.rest -= int64(n)
		return n, err
	}
	if c.err != nil {
		return 0, c.err
	}
	var hdr [4]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return 0, err
	}
	mark := binary.BigEndian.Uint32(hdr[:])
	total := int64(mark & 0x7fffffff)
	if mark&0x80000000 == 0 || total > maxRecord {
		return 0, c.refuse(fmt.Errorf("%w: record of %d bytes (last fragment %v; at most %d in one fragment)", errBadCall, total, mark&0x80000000 != 0, maxRecord))
	}
	if c.pre == nil {
		c.pre = make([]byte, 4+prefixLen)
	}
	pre := c.pre[:4+min(total, prefixLen)] // buf is empty: the buffer is free again
	copy(pre, hdr[:])
	if _, err := io.ReadFull(c.r, pre[4:]); err != nil {
		return 0, err
	}
	if err := checkCall(pre[4:], total); err != nil {
		return 0, c.refuse(err)
	}
	c.buf, c.rest = pre, total-int64(len(pre)-4)
	return c.read(p)
}

// refuse logs a bad call and ends the connection.
func (c *guardConn) refuse(err error) error {
	c.log.Warn("nfs export: disconnected a client that sent a malformed call", "client", c.RemoteAddr().String(), "err", err)
	c.err = err
	return err
}

// checkCall checks the start of one RPC call record of total bytes: the
// header, and for NFS and MOUNT calls every length field of the
// arguments as version 3 has them (a WRITE's data only against the
// record's length).
func checkCall(b []byte, total int64) error {
	rd := &xdrReader{b: b}
	bad := func(what string, args ...any) error {
		return fmt.Errorf("%w: %s", errBadCall, fmt.Sprintf(what, args...))
	}
	rd.u32() // xid
	if t := rd.u32(); t != 0 && !rd.bad {
		return bad("message type %d is not a call", t)
	}
	rd.u32() // rpcvers
	prog, vers, proc := rd.u32(), rd.u32(), rd.u32()
	for _, what := range []string{"credential", "verifier"} {
		rd.u32() // flavor
		if rd.opaque(maxAuthBody); rd.bad {
			return bad("%s longer than %d bytes or than the call", what, maxAuthBody)
		}
	}
	if rd.bad {
		return bad("call header of %d bytes", total)
	}
	var nameErr error
	fh := func() { rd.opaque(maxFH) }
	// dirop reads diropargs3: a directory's handle and a name, which
	// must be one path component ("." and ".." only for LOOKUP).
	dirop := func() {
		fh()
		n := rd.opaque(maxName)
		switch {
		case rd.bad || nameErr != nil:
		case bytes.ContainsAny(n, "/\x00"):
			nameErr = bad("program %d procedure %d: name %q is not one path component", prog, proc, n)
		case (string(n) == "." || string(n) == "..") && proc != 3:
			nameErr = bad("program %d procedure %d: name %q", prog, proc, n)
		}
	}
	sattr := func() {
		for range 3 { // mode, uid, gid
			if rd.u32() != 0 {
				rd.u32()
			}
		}
		if rd.u32() != 0 { // size
			rd.u32()
			rd.u32()
		}
		for range 2 { // atime, mtime
			if rd.u32() == 2 {
				rd.u32()
				rd.u32()
			}
		}
	}
	switch {
	// go-nfs dispatches on program and procedure only, whatever the
	// version: every version is checked as version 3
	case prog == progMount && (proc == 1 || proc == 3):
		rd.opaque(maxPath)
	case prog == progNFS:
		switch proc {
		case 0: // NULL
		case 3, 12, 13: // LOOKUP, REMOVE, RMDIR
			dirop()
		case 7: // WRITE: fh, offset, count, stable, data (checked against the record)
			fh()
			rd.u32()
			rd.u32()
			rd.u32()
			rd.u32()
			n := rd.u32()
			if !rd.bad && int64(n) > total-int64(len(b)-len(rd.b)) {
				return bad("WRITE data of %d bytes in a call of %d bytes", n, total)
			}
		case 8, 9: // CREATE, MKDIR
			dirop()
		case 10: // SYMLINK
			dirop()
			sattr()
			rd.opaque(maxPath)
		case 11: // MKNOD
			dirop()
		case 14: // RENAME
			dirop()
			dirop()
		case 15: // LINK: fh, then (as go-nfs reads it) diropargs
			fh()
			dirop()
		default: // every other procedure starts with a file handle
			fh()
		}
	}
	if nameErr != nil {
		return nameErr
	}
	if rd.bad {
		return bad("program %d version %d procedure %d: a length field exceeds the call (%d bytes) or its bound", prog, vers, proc, total)
	}
	return nil
}

// Symlink is refused: nothing an ESXi host or qemu keeps on a datastore
// is a symbolic link, and a link in the scratch directory could point a
// later path resolution (or a race with one) outside it.
func (s *sessionFS) Symlink(target, link string) error {
	return &fs.PathError{Op: "symlink", Path: link, Err: syscall.EPERM}
}

// DefaultMinFree is the free space kept on the session directory's
// filesystem when Options.MinFree is 0.
const DefaultMinFree = 1 << 30

// ErrScratchFull means a write to the scratch directory would leave less
// than Options.MinFree free on the session directory's filesystem.
var ErrScratchFull = errors.New("the session directory's filesystem is nearly full")

// scratchFile is a file of the scratch directory whose writes keep the
// free-space reserve.
type scratchFile struct {
	billy.File
	s *sessionFS
}

// guardScratch wraps a scratch file opened by OpenFile.
func (s *sessionFS) guardScratch(f billy.File, err error) (billy.File, error) {
	if err != nil || s.minFree <= 0 {
		return f, err
	}
	return &scratchFile{File: f, s: s}, nil
}

// reserve fails with ENOSPC when writing n bytes would leave less than
// the reserve free.
func (s *sessionFS) reserve(n int) error {
	var st unix.Statfs_t
	if err := unix.Statfs(s.Root(), &st); err != nil {
		return nil // no figure: the write itself will tell
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if free-int64(n) < s.minFree {
		s.log.Error("nfs export: refused a write to the scratch directory: the filesystem is nearly full",
			"dir", s.Root(), "free", free, "keep_free", s.minFree)
		return &fs.PathError{Op: "write", Path: s.Root(), Err: fmt.Errorf("%w (%d bytes free, %d kept free): %w", ErrScratchFull, free, s.minFree, syscall.ENOSPC)}
	}
	return nil
}

func (f *scratchFile) Write(p []byte) (int, error) {
	if err := f.s.reserve(len(p)); err != nil {
		return 0, err
	}
	return f.File.Write(p)
}

func (f *scratchFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.s.reserve(len(p)); err != nil {
		return 0, err
	}
	w, ok := f.File.(io.WriterAt)
	if !ok {
		return 0, &fs.PathError{Op: "writeat", Path: f.Name(), Err: errors.ErrUnsupported}
	}
	return w.WriteAt(p, off)
}

// ErrNotSessionDir means the session directory given holds other files:
// a session's directory is deleted when the session ends (restore
// instant), so only an empty or new directory, or one of a session, is
// taken.
var ErrNotSessionDir = errors.New("the directory holds files but no session")

// checkSessionDir refuses an existing directory that is neither empty nor
// a session's (session.json): a mistyped --session-dir (the repository,
// a home directory) would be deleted with the session.
func checkSessionDir(dir string) error {
	list, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var foreign []string
	for _, e := range list {
		switch e.Name() {
		case sessionFile:
			return nil
		case overlayDir, filesDir: // a session whose session.json was not written yet
		default:
			foreign = append(foreign, e.Name())
		}
	}
	if len(foreign) == 0 {
		return nil
	}
	return fmt.Errorf("%s: %w (it holds %s and %d more; ending a session deletes its directory): give an empty or new directory", dir, ErrNotSessionDir, foreign[0], len(foreign)-1)
}
