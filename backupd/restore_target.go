package backupd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cairnbackup/cairn/backupd/nbd"
)

// DiskTarget is an open write path to one disk of a VM being restored.
type DiskTarget interface {
	WriteAt(ctx context.Context, p []byte, off int64) error
	// WriteZeroes makes a range read as zeros without sending data.
	WriteZeroes(ctx context.Context, off, n int64) error
	Flush(ctx context.Context) error
	// Retries counts the requests that were retried.
	Retries() int64
	// Close releases what Open took (an NBD server, a hot-added disk).
	Close() error
}

// WriteTransport opens a disk of a VM being restored for writing. The
// DiskRef names the disk as for a backup's Transport, with no snapshot: a
// restore writes the VM's own disk. (nfc is not one: it writes the disks
// while it creates the VM, RestoreHypervisor.ImportVM.)
type WriteTransport interface {
	// Name is the transport's name (nbd, hotadd).
	Name() string
	Open(ctx context.Context, d DiskRef) (DiskTarget, error)
}

// NBDWriteTransport writes a disk through an NBD server started from
// Command (a server command template, DefaultRestoreNBDCommand when
// empty) on a private unix socket.
type NBDWriteTransport struct {
	Command string
	// Client tunes cairn's NBD client.
	Client nbd.Options
	// StartTimeout bounds the wait for the server's socket (default 30s).
	StartTimeout time.Duration
	Logger       *slog.Logger
}

// Name is "nbd".
func (*NBDWriteTransport) Name() string { return WriteTransportNBD }

// Open serves the disk and dials it; closing the target stops the server.
func (t *NBDWriteTransport) Open(ctx context.Context, d DiskRef) (_ DiskTarget, err error) {
	dir, err := newNBDDir()
	if err != nil {
		return nil, err
	}
	nt := &nbdTarget{dir: dir}
	defer func() {
		if err != nil {
			_ = nt.Close()
		}
	}()
	tmpl := t.Command
	if tmpl == "" {
		tmpl = DefaultRestoreNBDCommand
	}
	uri, err := dir.serve(ctx, d, tmpl, t.StartTimeout)
	if err != nil {
		return nil, err
	}
	o := t.Client
	if o.Logger == nil {
		o.Logger = t.Logger
	}
	if nt.Client, err = nbd.Dial(ctx, uri, o); err != nil {
		return nil, fmt.Errorf("nbd: connect to %s: %w", uri, err)
	}
	if nt.Client.ReadOnly() {
		return nil, fmt.Errorf("nbd: disk %s: %w", d.Disk.Name, ErrNBDReadOnly)
	}
	if nt.Client.Size() < d.Disk.Capacity {
		return nil, fmt.Errorf("nbd: export has %d bytes, the disk %d", nt.Client.Size(), d.Disk.Capacity)
	}
	return nt, nil
}

// nbdTarget writes through an NBD server started for the disk.
type nbdTarget struct {
	*nbd.Client
	dir *nbdDir
}

func (t *nbdTarget) Retries() int64 { return t.Client.Stats().Retries }

func (t *nbdTarget) Close() error {
	var err error
	if t.Client != nil {
		err = t.Client.Close()
	}
	_ = t.dir.release()
	return err
}

// unavailableTransport is a write transport that cannot be used; Open
// says why.
type unavailableTransport struct {
	name string
	err  error
}

func (t unavailableTransport) Name() string { return t.name }

func (t unavailableTransport) Open(context.Context, DiskRef) (DiskTarget, error) { return nil, t.err }

// writeTransports builds the named write transports for existing disks
// (nfc is tried when the VM is created: here it is skipped, or, when it is
// the only one named, fails saying why). The hotadd proxy is found once here.
func (j *restoreJob) writeTransports(ctx context.Context) []WriteTransport {
	out := make([]WriteTransport, 0, len(j.opts.Transports))
	for _, n := range j.opts.Transports {
		switch n {
		case WriteTransportNBD:
			out = append(out, &NBDWriteTransport{Command: j.opts.NBDCommand, Client: j.opts.NBD, StartTimeout: j.opts.NBDStartTimeout, Logger: j.log})
		case WriteTransportHotAdd:
			if j.opts.ProxyVM == "" {
				out = append(out, unavailableTransport{n, ErrNoProxyVM})
				continue
			}
			proxy, err := j.hv.FindRestoreProxy(ctx, j.opts.ProxyVM)
			if err != nil {
				out = append(out, unavailableTransport{n, err})
				continue
			}
			out = append(out, &HotAddWriteTransport{Proxy: proxy, Device: j.opts.HotAddDevice, Logger: j.log})
		case WriteTransportNFC:
			if len(j.opts.Transports) > 1 {
				continue // the default nfc,nbd: the others write existing disks, nfc has nothing to say
			}
			out = append(out, unavailableTransport{n, errors.New("nfc writes disks only while it creates a VM (restore vm); use nbd or hotadd here")})
		default:
			out = append(out, unavailableTransport{n, fmt.Errorf("unknown write transport %q (known: %s, %s, %s)", n, WriteTransportNFC, WriteTransportNBD, WriteTransportHotAdd)})
		}
	}
	return out
}
