package source

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/backupd/copier"
	"github.com/cairnbackup/cairn/backupd/nbd"
	"github.com/cairnbackup/cairn/blockmap"
)

// NBDOptions say how to open an NBD source.
type NBDOptions struct {
	// Client tunes cairn's NBD client; DirtyBitmap adds its context.
	Client nbd.Options
	// DirtyBitmap names the qemu dirty bitmap whose areas Changed lists
	// ("" for none).
	DirtyBitmap string
	// Size, when positive, is the disk's size: the export must hold at
	// least that many bytes.
	Size int64
	// OnClose runs after the client is closed (stop the server that
	// serves the export).
	OnClose func() error
}

// NBD is an NBD export read with cairn's client.
type NBD struct {
	name   string // as the user gave it, for messages and Meta
	bitmap string
	c      *nbd.Client
	r      *nbd.ReaderAt
	size   int64
	opts   NBDOptions
}

// DialNBD connects to the NBD URI uri; name is how the user gave the
// source (the URI, or a socket's path), for messages and Meta. Reads use
// ctx.
func DialNBD(ctx context.Context, name, uri string, opts NBDOptions) (*NBD, error) {
	t, err := nbd.ParseURI(uri)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", name, err)
	}
	if t.Network == "unix" {
		if _, err := os.Stat(t.Address); err != nil {
			return nil, fmt.Errorf("source %s: no NBD server socket at %s (is qemu-nbd or nbdkit running?): %w", name, t.Address, err)
		}
	}
	o := opts.Client
	if opts.DirtyBitmap != "" {
		o.MetaContexts = append(append([]string(nil), o.MetaContexts...), nbd.ContextDirtyBitmapPrefix+opts.DirtyBitmap)
	}
	c, err := nbd.DialTarget(ctx, t, o)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", name, err)
	}
	s := &NBD{name: name, bitmap: opts.DirtyBitmap, c: c, r: c.ReaderAt(ctx), size: c.Size(), opts: opts}
	switch {
	case c.Size() == 0:
		c.Close()
		return nil, fmt.Errorf("source %s: the export is empty: a disk must have a size", name)
	case opts.Size > 0 && c.Size() < opts.Size:
		c.Close()
		return nil, fmt.Errorf("nbd: export %s has %d bytes, the disk %d", name, c.Size(), opts.Size)
	case opts.DirtyBitmap != "" && !c.HasContext(nbd.ContextDirtyBitmapPrefix+opts.DirtyBitmap):
		c.Close()
		return nil, &NoBitmapError{Source: name, Bitmap: opts.DirtyBitmap}
	}
	if opts.Size > 0 {
		s.size = opts.Size
	}
	return s, nil
}

// ErrBitmapNotNBD means a dirty bitmap was asked of a source that is no
// NBD export (only an NBD server exports dirty bitmaps).
var ErrBitmapNotNBD = errors.New("a dirty bitmap can be read from NBD sources only")

// NoBitmapError means an NBD server does not export the dirty bitmap asked
// for (qemu-nbd exports one with -B NAME); the CLI says what to do.
type NoBitmapError struct{ Source, Bitmap string }

func (e *NoBitmapError) Error() string {
	return fmt.Sprintf("source %s: the server does not export dirty bitmap %q", e.Source, e.Bitmap)
}

// ReadAt implements io.ReaderAt.
func (s *NBD) ReadAt(p []byte, off int64) (int, error) { return s.r.ReadAt(p, off) }

// Size is the disk's size.
func (s *NBD) Size() int64 { return s.size }

// Client is the NBD client (for its statistics).
func (s *NBD) Client() *nbd.Client { return s.c }

// Allocated lists what base:allocation marks as data.
func (s *NBD) Allocated(ctx context.Context) ([]blockmap.Extent, error) {
	ext, err := NBDDataAreas(ctx, s.c)
	if err != nil {
		return nil, fmt.Errorf("allocated areas of %s: %w", s.name, err)
	}
	return ext, nil
}

// Changed lists the areas the dirty bitmap marks.
func (s *NBD) Changed(ctx context.Context) ([]blockmap.Extent, error) {
	if s.bitmap == "" {
		return nil, fmt.Errorf("source %s: no dirty bitmap given", s.name)
	}
	ext, err := NBDDirtyAreas(ctx, s.c, s.bitmap)
	if err != nil {
		return nil, fmt.Errorf("dirty bitmap %q of %s: %w", s.bitmap, s.name, err)
	}
	return ext, nil
}

// Base names the dirty bitmap ("" without one).
func (s *NBD) Base() string {
	if s.bitmap == "" {
		return ""
	}
	return "dirty bitmap " + s.bitmap
}

// Meta records the transport, the source and the dirty bitmap.
func (s *NBD) Meta() map[string]any {
	m := map[string]any{"transport": "nbd", "source": s.name}
	if s.bitmap != "" {
		m["dirty_bitmap"] = s.bitmap
	}
	return m
}

// CopyOptions reads 2 MiB per request: the client splits it into
// pipelined NBD reads over its connections.
func (s *NBD) CopyOptions() copier.Options { return copier.Options{ChunkSize: 2 << 20} }

// Close closes the client and runs OnClose.
func (s *NBD) Close() error {
	err := s.c.Close()
	if s.opts.OnClose != nil {
		if cerr := s.opts.OnClose(); err == nil {
			err = cerr
		}
	}
	return err
}

// NBDDataAreas lists the areas of an NBD export a full backup has to read:
// what base:allocation marks as data (neither a hole nor reading as
// zeros), or the whole export when the server offers no block status.
func NBDDataAreas(ctx context.Context, c *nbd.Client) ([]blockmap.Extent, error) {
	if !c.HasContext(nbd.ContextBaseAllocation) {
		return []blockmap.Extent{{Offset: 0, Length: c.Size()}}, nil
	}
	ext, err := c.AllocatedExtents(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]blockmap.Extent, 0, len(ext))
	for _, e := range ext {
		if !e.Zero() {
			out = append(out, blockmap.Extent{Offset: e.Offset, Length: e.Length})
		}
	}
	return out, nil
}

// NBDDirtyAreas lists the areas the qemu dirty bitmap of that name marks
// (negotiated with nbd.Options.MetaContexts
// nbd.ContextDirtyBitmapPrefix+bitmap).
func NBDDirtyAreas(ctx context.Context, c *nbd.Client, bitmap string) ([]blockmap.Extent, error) {
	ext, err := c.DirtyExtents(ctx, bitmap)
	if err != nil {
		return nil, err
	}
	out := make([]blockmap.Extent, len(ext))
	for i, e := range ext {
		out[i] = blockmap.Extent{Offset: e.Offset, Length: e.Length}
	}
	return out, nil
}

// Options say how Open opens a source a user named.
type Options struct {
	// DirtyBitmap, for an NBD source, names the qemu dirty bitmap whose
	// dirty areas an incremental reads ("" for none).
	DirtyBitmap string
	// TLS configures nbds:// sources (nil: system roots).
	TLS *nbd.TLSOptions
	// StallTimeout fails an NBD connection without progress for this
	// long; the handshake gets at most 30s of it (0: the client's defaults).
	StallTimeout time.Duration
}

// Open opens spec: an NBD URI, a unix socket of an NBD server (its
// default export), or a raw image or block device (read with O_DIRECT
// where allowed).
func Open(ctx context.Context, spec string, opts Options) (Source, error) {
	uri := spec
	if !IsURI(spec) {
		if !isSocket(spec) {
			if opts.DirtyBitmap != "" {
				return nil, fmt.Errorf("source %s: %w (nbd://HOST/EXPORT, nbd+unix:///EXPORT?socket=PATH)", spec, ErrBitmapNotNBD)
			}
			return OpenFile(spec, FileOptions{Direct: true})
		}
		uri = nbd.UnixTarget(spec, "").String()
	}
	o := nbd.Options{TLS: opts.TLS} // TLS options turn TLS on, as nbds:// does
	if opts.StallTimeout > 0 {
		o.StallTimeout = opts.StallTimeout
		o.DialTimeout = min(opts.StallTimeout, 30*time.Second)
	}
	return DialNBD(ctx, spec, uri, NBDOptions{Client: o, DirtyBitmap: opts.DirtyBitmap})
}

// IsURI reports whether spec is a URI (SCHEME://...) rather than a file:
// it is then read as an NBD URI, and a scheme other than nbd, nbds,
// nbd+unix or nbds+unix is refused by name.
func IsURI(spec string) bool {
	scheme, _, ok := strings.Cut(spec, "://")
	return ok && scheme != "" && !strings.Contains(scheme, "/")
}

// isSocket reports whether path is a unix socket (an NBD server's).
func isSocket(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode()&os.ModeSocket != 0
}
