package backupd

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/cairnbackup/cairn/backupd/source"
	"github.com/cairnbackup/cairn/backupd/vsphere"
)

// Transport names.
const (
	TransportNBD    = "nbd"
	TransportHotAdd = "hotadd"
	TransportFile   = "file"
)

// DefaultTransports is the order tried when none is given.
var DefaultTransports = []string{TransportHotAdd, TransportNBD}

// ParseTransports checks a comma-separated transport list.
func ParseTransports(s string) ([]string, error) {
	var out []string
	for _, t := range strings.Split(s, ",") {
		t = strings.TrimSpace(t)
		switch t {
		case "":
			continue
		case TransportNBD, TransportHotAdd, TransportFile:
			out = append(out, t)
		default:
			return nil, fmt.Errorf("transport %q: use nbd, hotadd or file", t)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no transport given: use nbd, hotadd or file")
	}
	return out, nil
}

// DiskRef is the plain data a transport needs to open one frozen disk of
// a snapshot: no job, no connection state beyond what is named here. A
// WriteTransport opens one with no SnapshotRef: the disk of a VM being
// restored.
type DiskRef struct {
	VMRef  string // the VM's MoRef value
	VMName string
	// SnapshotRef is the MoRef value of the snapshot the disk is frozen in.
	SnapshotRef string
	Disk        vsphere.Disk
	// LocalPath maps a datastore file name to a local path (the file
	// transport, {disk_local_path}); nil when no datastore is local.
	LocalPath func(ctx context.Context, fileName string) (string, error)
	// Server is the server the disk lives on: its host name and
	// certificate ({server}, {thumbprint}); nil when there is none.
	Server Server
	// Credentials and Thumbprint fill {user}, {password_file} and
	// {thumbprint}.
	Credentials vsphere.Credentials
	Thumbprint  string
}

// localPath maps the disk's backing file to a local path.
func (d DiskRef) localPath(ctx context.Context) (string, error) {
	if d.LocalPath == nil {
		return "", fmt.Errorf("disk %s: no datastore is mounted locally", d.Disk.Name)
	}
	return d.LocalPath(ctx, d.Disk.FileName)
}

// Transport opens frozen disks as sources.
type Transport interface {
	// Name is the transport's name (nbd, hotadd, file).
	Name() string
	// Open opens the disk; closing the source releases what Open took
	// (an NBD server, a hot-added disk).
	Open(ctx context.Context, d DiskRef) (source.Source, error)
}

// transports builds the named transports from the job options; proxy is
// the hotadd proxy (nil when none was found).
func transports(names []string, opts JobOptions, proxy HotAddProxy, log *slog.Logger) []Transport {
	out := make([]Transport, 0, len(names))
	for _, n := range names {
		switch n {
		case TransportNBD:
			out = append(out, &NBDTransport{Command: opts.NBDCommand, URL: opts.NBDURL, Client: opts.NBD, StartTimeout: opts.nbdStartTimeout(), Logger: log})
		case TransportHotAdd:
			out = append(out, &HotAddTransport{Proxy: proxy, Device: opts.HotAddDevice, Logger: log})
		default:
			out = append(out, FileTransport{})
		}
	}
	return out
}

// openFirst tries the transports in order and returns the first source
// that opens, with the transport's name.
func openFirst(ctx context.Context, ts []Transport, d DiskRef, log *slog.Logger) (source.Source, string, error) {
	var errs []string
	for _, t := range ts {
		src, err := t.Open(ctx, d)
		if err == nil {
			return src, t.Name(), nil
		}
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		log.Warn("transport failed; trying the next", "vm", d.VMName, "disk", d.Disk.Name, "transport", t.Name(), "error", err)
		errs = append(errs, t.Name()+": "+err.Error())
	}
	return nil, "", fmt.Errorf("disk %s: no transport could open it (%s)", d.Disk.Name, strings.Join(errs, "; "))
}
