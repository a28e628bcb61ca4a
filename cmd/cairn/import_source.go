package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/copier"
	"github.com/cairnbackup/cairn/backupd/nbd"
	"github.com/cairnbackup/cairn/blockmap"
)

// importSource is one disk an import reads: a local raw image or block
// device, or an NBD export.
type importSource interface {
	io.ReaderAt
	// Size is the disk's size in bytes.
	Size() int64
	// Allocated lists the areas a full read has to cover (SEEK_DATA, or
	// NBD block status); the rest reads as zeros.
	Allocated(ctx context.Context) ([]blockmap.Extent, error)
	// Meta is what the point records about the source.
	Meta() map[string]any
	// Workers and ChunkSize tune the copy for this kind of source.
	CopyOptions() copier.Options
	Close() error
}

// importSourceOptions say how to open the sources of one import.
type importSourceOptions struct {
	// DirtyBitmap, for an NBD source, names the qemu dirty bitmap whose
	// dirty areas an incremental reads ("" for none).
	DirtyBitmap string
	// TLS configures nbds:// sources (nil: system roots).
	TLS *nbd.TLSOptions
	// StallTimeout fails an NBD connection without progress for this
	// long; the handshake gets at most 30s of it (0: the client's defaults).
	StallTimeout time.Duration
}

// isURI reports whether path is a URI (SCHEME://...) rather than a file:
// it is then read as an NBD URI, and a scheme other than nbd, nbds,
// nbd+unix or nbds+unix is refused by name.
func isURI(path string) bool {
	scheme, _, ok := strings.Cut(path, "://")
	return ok && scheme != "" && !strings.Contains(scheme, "/")
}

// openImportSource opens path: an NBD URI, a unix socket of an NBD server
// (its default export), or a raw image or block device.
func openImportSource(ctx context.Context, path string, opts importSourceOptions) (importSource, error) {
	uri := path
	if !isURI(path) {
		if isSocket(path) {
			uri = nbd.UnixTarget(path, "").String()
		} else {
			if opts.DirtyBitmap != "" {
				return nil, fmt.Errorf("source %s: --dirty-bitmap applies to NBD sources only (nbd://HOST/EXPORT, nbd+unix:///EXPORT?socket=PATH); use --changed for a file", path)
			}
			return openFileSource(path)
		}
	}
	return openNBDSource(ctx, path, uri, opts)
}

// fileSource is a raw image or block device, read with direct I/O where
// the filesystem allows it.
type fileSource struct {
	path string
	f    *os.File
	size int64
	r    *copier.FileReader
}

func openFileSource(path string) (*fileSource, error) {
	f, size, err := copier.OpenSource(path)
	if err != nil {
		return nil, err
	}
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_SEQUENTIAL)
	return &fileSource{path: path, f: f, size: size, r: copier.NewFileReader(f)}, nil
}

func (s *fileSource) ReadAt(p []byte, off int64) (int, error) { return s.r.ReadAt(p, off) }
func (s *fileSource) Size() int64                             { return s.size }

func (s *fileSource) Allocated(context.Context) ([]blockmap.Extent, error) {
	ext, err := copier.DataExtents(s.f, s.size)
	if err != nil {
		return nil, fmt.Errorf("allocated areas of %s: %w", s.path, err)
	}
	return ext, nil
}

func (s *fileSource) Meta() map[string]any {
	return map[string]any{"transport": "file", "source": s.path}
}

// CopyOptions keeps importWorkers 4 MiB direct reads in flight.
func (s *fileSource) CopyOptions() copier.Options { return copier.Options{Workers: importWorkers} }

func (s *fileSource) Close() error {
	err := s.r.Close()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// nbdSource is an NBD export read with cairn's client.
type nbdSource struct {
	uri    string // as the user gave it, for messages and the point's metadata
	bitmap string
	c      *nbd.Client
	r      *nbd.ReaderAt
}

// openNBDSource dials uri; name is the source as the user gave it (the
// URI, or a socket's path), for messages and the point's metadata.
func openNBDSource(ctx context.Context, name, uri string, opts importSourceOptions) (*nbdSource, error) {
	t, err := nbd.ParseURI(uri)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", name, err)
	}
	if t.Network == "unix" {
		if _, err := os.Stat(t.Address); err != nil {
			return nil, fmt.Errorf("source %s: no NBD server socket at %s (is qemu-nbd or nbdkit running?): %w", name, t.Address, err)
		}
	}
	o := nbd.Options{TLS: opts.TLS} // TLS options turn TLS on, as nbds:// does
	if opts.StallTimeout > 0 {
		o.StallTimeout = opts.StallTimeout
		o.DialTimeout = min(opts.StallTimeout, 30*time.Second)
	}
	if opts.DirtyBitmap != "" {
		o.MetaContexts = []string{nbd.ContextDirtyBitmapPrefix + opts.DirtyBitmap}
	}
	c, err := nbd.DialTarget(ctx, t, o)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", name, err)
	}
	s := &nbdSource{uri: name, bitmap: opts.DirtyBitmap, c: c, r: c.ReaderAt(ctx)}
	if s.c.Size() == 0 {
		c.Close()
		return nil, fmt.Errorf("source %s: the export is empty: a disk must have a size", name)
	}
	if opts.DirtyBitmap != "" && !c.HasContext(nbd.ContextDirtyBitmapPrefix+opts.DirtyBitmap) {
		c.Close()
		return nil, fmt.Errorf("source %s: the server does not export dirty bitmap %q: start qemu-nbd with -B %s (or drop --dirty-bitmap for a read compared by hash)",
			name, opts.DirtyBitmap, opts.DirtyBitmap)
	}
	return s, nil
}

func (s *nbdSource) ReadAt(p []byte, off int64) (int, error) { return s.r.ReadAt(p, off) }
func (s *nbdSource) Size() int64                             { return s.c.Size() }

func (s *nbdSource) Allocated(ctx context.Context) ([]blockmap.Extent, error) {
	ext, err := backupd.NBDDataAreas(ctx, s.c)
	if err != nil {
		return nil, fmt.Errorf("allocated areas of %s: %w", s.uri, err)
	}
	return ext, nil
}

// Dirty lists the areas the dirty bitmap marks.
func (s *nbdSource) Dirty(ctx context.Context) ([]blockmap.Extent, error) {
	ext, err := backupd.NBDDirtyAreas(ctx, s.c, s.bitmap)
	if err != nil {
		return nil, fmt.Errorf("dirty bitmap %q of %s: %w", s.bitmap, s.uri, err)
	}
	return ext, nil
}

func (s *nbdSource) Meta() map[string]any {
	m := map[string]any{"transport": "nbd", "source": s.uri}
	if s.bitmap != "" {
		m["dirty_bitmap"] = s.bitmap
	}
	return m
}

// CopyOptions reads 2 MiB per request: the client splits it into
// pipelined NBD reads over its connections.
func (s *nbdSource) CopyOptions() copier.Options { return copier.Options{ChunkSize: 2 << 20} }

func (s *nbdSource) Close() error { return s.c.Close() }

// isSocket reports whether path is a unix socket (an NBD server's).
func isSocket(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode()&os.ModeSocket != 0
}
