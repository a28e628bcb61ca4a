package backupd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cairnbackup/cairn/backupd/nbd"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
)

// nbdSource reads an export with cairn's NBD client.
type nbdSource struct {
	ctx    context.Context
	client *nbd.Client
	server *nbdServer
	tmp    string
}

func (s *nbdSource) ReadAt(p []byte, off int64) (int, error) { return s.client.ReadAt(s.ctx, p, off) }

func (s *nbdSource) Allocated(ctx context.Context) ([]blockmap.Extent, error) {
	return NBDDataAreas(ctx, s.client)
}

func (s *nbdSource) Close() error {
	var err error
	if s.client != nil {
		err = s.client.Close()
	}
	if s.server != nil {
		s.server.stop()
	}
	if s.tmp != "" {
		_ = os.RemoveAll(s.tmp)
	}
	return err
}

// openNBD connects to --nbd-url, or starts the --nbd-command server for the
// disk on a private unix socket, and dials it.
func openNBD(ctx context.Context, j *vmJob, d vsphere.Disk) (src source, err error) {
	s := &nbdSource{ctx: ctx}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	sweepNBDDirs()
	s.tmp, err = os.MkdirTemp("", nbdDirPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return nil, fmt.Errorf("nbd: %w", err)
	}
	socket := filepath.Join(s.tmp, "nbd.sock")
	ph := j.nbdPlaceholders(d, socket, s.tmp)
	uri := j.opts.NBDURL
	if uri != "" {
		words, err := ph.expand(ctx, uri)
		if err != nil {
			return nil, err
		}
		uri = words[0]
	} else {
		tmpl := j.opts.NBDCommand
		if tmpl == "" {
			tmpl = DefaultNBDCommand
		}
		args, err := ph.expand(ctx, tmpl)
		if err != nil {
			return nil, err
		}
		if s.server, err = startNBDServer(ctx, args, socket, j.opts.nbdStartTimeout()); err != nil {
			return nil, err
		}
		uri = nbd.UnixTarget(socket, "").String()
	}
	opts := j.opts.NBD
	if opts.Logger == nil {
		opts.Logger = j.log
	}
	if s.client, err = nbd.Dial(ctx, uri, opts); err != nil {
		return nil, fmt.Errorf("nbd: connect to %s: %w", uri, err)
	}
	if s.client.Size() < d.Capacity {
		return nil, fmt.Errorf("nbd: export %s has %d bytes, the disk %d", uri, s.client.Size(), d.Capacity)
	}
	return s, nil
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

// nbdPlaceholders is the template data of disk d, served on socket with
// its password file in tmp.
func (j *vmJob) nbdPlaceholders(d vsphere.Disk, socket, tmp string) nbdPlaceholders {
	p := nbdPlaceholders{
		Conn: j.conn, Credentials: j.opts.Credentials, Thumbprint: j.opts.Thumbprint,
		Disk: d, Socket: socket, Tmp: tmp,
		LocalPath: func(ctx context.Context, _ string) (string, error) { return j.localPath(ctx, d) },
	}
	if j.vm != nil {
		p.VMRef, p.VMName = j.vm.Ref.Value, j.vm.Name
	}
	if j.snap != nil {
		p.SnapshotRef = j.snap.Ref.Value
	}
	return p
}
