package nfsserve

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	nfs "github.com/willscott/go-nfs"

	"github.com/cairnbackup/cairn/backupd/nbdserve"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/vmdkdesc"
)

// Session directory layout.
const (
	sessionFile = "session.json"
	overlayDir  = "overlays"
	filesDir    = "files"
)

// Options configure an export.
type Options struct {
	// SessionDir holds the session: session.json, overlays/ (one sparse
	// overlay per disk) and files/ (the exported tree). Created when
	// missing; an existing one must belong to the same VM and point.
	SessionDir string
	// Point is the recovery point whose disks are served.
	Point blockmap.Point
	// OpenDisk opens a disk of the point for reading (blockmap.Repo's
	// OpenDisk). The export closes what it returns when it closes.
	OpenDisk func(ctx context.Context, disk string) (nbdserve.Source, error)
	// SyncEvery is how often the overlays are flushed to stable storage
	// while serving (default 5 s). go-nfs answers every WRITE as
	// FILE_SYNC: writes of the last SyncEvery are lost if the appliance
	// itself crashes.
	SyncEvery time.Duration
	// Allow is who may connect (NFS and MOUNT); others are disconnected
	// at once. nil: Loopback (this machine only).
	Allow *AllowList
	// MinFree is the free space (bytes) writes to the scratch directory
	// keep on the session directory's filesystem; a write that would
	// leave less fails with NFS3ERR_NOSPC (default DefaultMinFree; < 0:
	// no reserve). The overlays are bounded by the disks' sizes.
	MinFree int64
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// Disk names the files of one disk in the exported tree.
type Disk struct {
	// Name is the disk's name in the point.
	Name string `json:"name"`
	// Descriptor is the VMDK descriptor's file name (NAME.vmdk): what a
	// VM's configuration names.
	Descriptor string `json:"descriptor"`
	// Flat is the flat extent's file name (NAME-flat.vmdk).
	Flat string `json:"flat"`
	// Size in bytes.
	Size int64 `json:"size"`
}

// session is session.json: what the session serves.
type session struct {
	VM      string    `json:"vm"`
	Point   string    `json:"point"`
	Created time.Time `json:"created"`
	Disks   []Disk    `json:"disks"`
}

// ErrOtherSession means the session directory belongs to another VM or
// point.
var ErrOtherSession = errors.New("session directory belongs to another point")

// Export is a recovery point served over NFSv3.
type Export struct {
	opts    Options
	fs      *sessionFS
	h       *handler
	disks   []Disk
	closers []func() error
	log     *slog.Logger
	mu      sync.Mutex
	closed  bool
	// fastCalls counts the READs and WRITEs the fast path answered.
	fastCalls atomic.Int64
}

// Open prepares (or reopens) the session in opts.SessionDir: every disk's
// overlay and descriptor. Close releases them.
func Open(ctx context.Context, opts Options) (_ *Export, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MinFree == 0 {
		opts.MinFree = DefaultMinFree
	}
	if opts.SyncEvery <= 0 {
		opts.SyncEvery = 5 * time.Second
	}
	if opts.SessionDir == "" {
		return nil, errors.New("nfs export: no session directory (give one: it takes the writes)")
	}
	p := opts.Point
	if len(p.Disks) == 0 {
		return nil, fmt.Errorf("nfs export: point %s of VM %s has no disks", p.ID, p.VM)
	}
	if err := checkSessionDir(opts.SessionDir); err != nil { // guard.go
		return nil, fmt.Errorf("nfs export: %w", err)
	}
	for _, d := range []string{opts.SessionDir, filepath.Join(opts.SessionDir, overlayDir), filepath.Join(opts.SessionDir, filesDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("nfs export: session directory: %w", err)
		}
	}
	sess := session{VM: p.VM, Point: p.ID, Created: time.Now().UTC(), Disks: diskFiles(p)}
	sp := filepath.Join(opts.SessionDir, sessionFile)
	if b, err := os.ReadFile(sp); err == nil {
		var old session
		if err := json.Unmarshal(b, &old); err != nil {
			return nil, fmt.Errorf("nfs export: %s: %w (not a session directory? give an empty or new one)", sp, err)
		}
		if old.VM != p.VM || old.Point != p.ID {
			return nil, fmt.Errorf("nfs export: %s serves VM %s point %s, not VM %s point %s: %w (give another --session-dir)",
				opts.SessionDir, old.VM, old.Point, p.VM, p.ID, ErrOtherSession)
		}
		sess.Created = old.Created
	} else if !os.IsNotExist(err) {
		return nil, fmt.Errorf("nfs export: %w", err)
	} else {
		b, _ := json.MarshalIndent(sess, "", "  ")
		if err := writeFileSync(sp, append(b, '\n')); err != nil {
			return nil, fmt.Errorf("nfs export: %w", err)
		}
	}
	e := &Export{opts: opts, disks: sess.Disks, log: opts.Logger}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	files := filepath.Join(opts.SessionDir, filesDir)
	e.fs = &sessionFS{Filesystem: osfs.New(files, osfs.WithBoundOS()), disks: map[string]*disk{},
		minFree: opts.MinFree, log: opts.Logger}
	for i, d := range p.Disks {
		src, err := opts.OpenDisk(ctx, d.Name)
		if err != nil {
			return nil, fmt.Errorf("nfs export: %w", err)
		}
		if c, ok := src.(interface{ Close() error }); ok {
			e.closers = append(e.closers, c.Close)
		}
		df := sess.Disks[i]
		ov, err := nbdserve.OpenOverlay(filepath.Join(opts.SessionDir, overlayDir, df.Flat+".overlay"), src,
			fmt.Sprintf("VM %s point %s disk %s", p.VM, p.ID, d.Name))
		if err != nil {
			return nil, fmt.Errorf("nfs export: disk %s: %w", d.Name, err)
		}
		e.closers = append(e.closers, ov.Close)
		e.fs.disks[df.Flat] = &disk{name: df.Flat, ov: ov, mtime: p.Time}
		desc := filepath.Join(files, df.Descriptor)
		if _, err := os.Stat(desc); os.IsNotExist(err) {
			if err := writeFileSync(desc, descriptor(p, d, df.Flat)); err != nil {
				return nil, fmt.Errorf("nfs export: %w", err)
			}
		}
	}
	e.h = newHandler(e.fs, files, opts.SessionDir+"\x00"+p.VM+"\x00"+p.ID)
	return e, nil
}

// Disks are the disks' files in the exported tree, in the point's order.
func (e *Export) Disks() []Disk { return append([]Disk(nil), e.disks...) }

// Serve answers NFSv3 and MOUNT clients on ln until ctx ends (then ln
// and every connection are closed and the overlays synced); it returns
// nil then.
func (e *Export) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tl := &trackingListener{Listener: &guardListener{Listener: ln, allow: e.opts.Allow, log: e.log}, conns: map[net.Conn]struct{}{}}
	go func() {
		<-ctx.Done()
		tl.closeAll()
	}()
	go func() {
		t := time.NewTicker(e.opts.SyncEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := e.Sync(); err != nil {
					e.log.Error("nfs export: overlay sync failed", "err", err)
				}
			}
		}
	}()
	srv := &nfs.Server{Handler: e.h, Context: ctx}
	if _, err := rand.Read(srv.ID[:]); err != nil {
		return fmt.Errorf("nfs export: %w", err)
	}
	err := srv.Serve(&fastListener{Listener: tl, h: e.h, verf: srv.ID, log: e.log, calls: &e.fastCalls})
	serr := e.Sync()
	if ctx.Err() != nil {
		return serr
	}
	return fmt.Errorf("nfs export: %w", err)
}

// Sync flushes every overlay to stable storage.
func (e *Export) Sync() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	var errs []error
	for _, d := range e.fs.disks {
		errs = append(errs, d.ov.Sync())
	}
	return errors.Join(errs...)
}

// Close syncs and closes the overlays and the point's readers.
func (e *Export) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	var errs []error
	for i := len(e.closers) - 1; i >= 0; i-- {
		errs = append(errs, e.closers[i]())
	}
	return errors.Join(errs...)
}

// trackingListener remembers its connections so that they can be closed
// when the export stops (go-nfs does not close them itself).
type trackingListener struct {
	net.Listener
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	l.conns[c] = struct{}{}
	return &trackedConn{Conn: c, l: l}, nil
}

func (l *trackingListener) closeAll() {
	l.mu.Lock()
	l.closed = true
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
	l.Listener.Close()
}

type trackedConn struct {
	net.Conn
	l    *trackingListener
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c.Conn)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// diskFiles names each disk's files: the disk's name made safe for a
// file name (and unique).
func diskFiles(p blockmap.Point) []Disk {
	seen := map[string]bool{}
	var out []Disk
	for _, d := range p.Disks {
		base := safeName(d.Name)
		for i := 2; seen[strings.ToLower(base)]; i++ {
			base = fmt.Sprintf("%s_%d", safeName(d.Name), i)
		}
		seen[strings.ToLower(base)] = true
		out = append(out, Disk{Name: d.Name, Descriptor: base + ".vmdk", Flat: base + "-flat.vmdk", Size: d.Size})
	}
	return out
}

// safeName keeps letters, digits, '.', '_' and '-' of a disk's name.
func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	s = strings.TrimLeft(string(b), ".")
	if s == "" {
		s = "disk"
	}
	return s
}

// descriptor is the VMDK descriptor of a disk whose extent is the flat
// file beside it (internal/vmdkdesc, ESXi's vmfs shape and file naming).
func descriptor(p blockmap.Point, d blockmap.DiskInfo, flat string) []byte {
	return vmdkdesc.Descriptor(p, d, vmdkdesc.VMFS, flat, "cairn instant recovery")
}

// writeFileSync writes a new file durably.
func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
