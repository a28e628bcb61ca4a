package backupd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/backupd/nbd"
	"github.com/cairnbackup/cairn/backupd/source"
)

// NBDTransport reads a disk over NBD: it dials URL, or starts Command (a
// server command template, DefaultNBDCommand when empty) for the disk on
// a private unix socket and dials that.
type NBDTransport struct {
	Command string
	URL     string // may use the same placeholders as Command
	// Client tunes cairn's NBD client.
	Client nbd.Options
	// StartTimeout bounds the wait for the server's socket (default 30s).
	StartTimeout time.Duration
	Logger       *slog.Logger
}

// Name is "nbd".
func (*NBDTransport) Name() string { return TransportNBD }

// Open serves and dials the disk; closing the source stops the server.
func (t *NBDTransport) Open(ctx context.Context, d DiskRef) (_ source.Source, err error) {
	dir, err := newNBDDir()
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = dir.release()
		}
	}()
	uri := t.URL
	if uri != "" {
		words, err := d.placeholders(dir.socket, dir.tmp).expand(ctx, uri)
		if err != nil {
			return nil, err
		}
		uri = words[0]
	} else {
		tmpl := t.Command
		if tmpl == "" {
			tmpl = DefaultNBDCommand
		}
		if uri, err = dir.serve(ctx, d, tmpl, t.StartTimeout); err != nil {
			return nil, err
		}
	}
	opts := t.Client
	if opts.Logger == nil {
		opts.Logger = t.Logger
	}
	src, err := source.DialNBD(ctx, uri, uri, source.NBDOptions{Client: opts, Size: d.Disk.Capacity, OnClose: dir.release})
	if err != nil {
		return nil, fmt.Errorf("nbd: %w", err)
	}
	return src, nil
}

// nbdDir is the private directory of one disk's NBD server (its socket
// and password file) and, once started, the server: the backup and the
// restore transports both serve disks through it.
type nbdDir struct {
	tmp, socket string
	server      *nbdServer
}

// newNBDDir makes the directory, after sweeping those of dead processes.
func newNBDDir() (*nbdDir, error) {
	sweepNBDDirs()
	tmp, err := os.MkdirTemp("", nbdDirPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return nil, fmt.Errorf("nbd: %w", err)
	}
	return &nbdDir{tmp: tmp, socket: filepath.Join(tmp, "nbd.sock")}, nil
}

// serve fills the command template tmpl for d, starts the server on the
// directory's socket (waiting at most timeout, default 30 s) and returns
// the URI to dial.
func (s *nbdDir) serve(ctx context.Context, d DiskRef, tmpl string, timeout time.Duration) (string, error) {
	args, err := d.placeholders(s.socket, s.tmp).expand(ctx, tmpl)
	if err != nil {
		return "", err
	}
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	if s.server, err = startNBDServer(ctx, args, s.socket, timeout); err != nil {
		return "", err
	}
	return nbd.UnixTarget(s.socket, "").String(), nil
}

// release stops the server and removes the directory.
func (s *nbdDir) release() error {
	if s.server != nil {
		s.server.stop()
	}
	_ = os.RemoveAll(s.tmp)
	return nil
}

// nbdDirPrefix starts the private directory (socket, password file) of each
// NBD server: cairn-nbd-<pid>-<random> in $TMPDIR.
const nbdDirPrefix = "cairn-nbd-"

// sweepNBDDirs removes the directories of cairn processes that are gone
// (killed while a server ran).
func sweepNBDDirs() {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), nbdDirPrefix+"*-*"))
	for _, m := range matches {
		pidStr, _, ok := strings.Cut(strings.TrimPrefix(filepath.Base(m), nbdDirPrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		_ = os.RemoveAll(m)
	}
}

// placeholders is the template data of the disk, served on socket with
// its password file in tmp.
func (d DiskRef) placeholders(socket, tmp string) nbdPlaceholders {
	return nbdPlaceholders{
		Conn: d.Server, Credentials: d.Credentials, Thumbprint: d.Thumbprint,
		VMRef: d.VMRef, VMName: d.VMName, SnapshotRef: d.SnapshotRef,
		Disk: d.Disk, Socket: socket, Tmp: tmp,
		LocalPath: func(ctx context.Context, _ string) (string, error) { return d.localPath(ctx) },
	}
}
