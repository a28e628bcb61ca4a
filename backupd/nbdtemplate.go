package backupd

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/cairnbackup/cairn/backupd/vsphere"
)

// ErrNoThumbprint means an NBD command template names {thumbprint} while
// no thumbprint was given and no vCenter connection can read it.
var ErrNoThumbprint = errors.New("no vCenter thumbprint for {thumbprint}: none given and no vCenter connection to read it from")

// nbdPlaceholders is the plain data an NBD server command template of one
// disk is filled from ({socket}, {server}, {thumbprint}, {disk_file}, …);
// the backup and the restore transports both fill it, so neither needs the
// other's job.
type nbdPlaceholders struct {
	Conn        Server // the server: its host name and certificate
	Credentials vsphere.Credentials
	Thumbprint  string // as configured; empty reads the server's certificate
	VMRef       string
	VMName      string
	// SnapshotRef is the snapshot read from; empty for a restore, which
	// writes no snapshot, and {snapshot_moref} is then an error.
	SnapshotRef string
	Disk        vsphere.Disk
	Socket      string // the server's unix socket
	Tmp         string // private directory for the password file
	// LocalPath maps a datastore file name to a local path
	// ({disk_local_path}).
	LocalPath func(ctx context.Context, fileName string) (string, error)
}

// Server is the management server a disk lives on, as an NBD command
// names it (*vsphere.Conn).
type Server interface {
	// Hostname is the server's host name ({server}).
	Hostname() string
	// ServerThumbprint is the SHA-1 thumbprint of its certificate
	// ({thumbprint} when none is configured), "" when it cannot be read.
	ServerThumbprint(ctx context.Context) string
}

// value computes the placeholder name.
func (p nbdPlaceholders) value(ctx context.Context, name string) (string, error) {
	switch name {
	case "socket":
		return p.Socket, nil
	case "server":
		if p.Conn == nil {
			return "", errors.New("no vCenter connection to name the server")
		}
		return p.Conn.Hostname(), nil
	case "user":
		return p.Credentials.User, nil
	case "password_file":
		f := filepath.Join(p.Tmp, "password")
		if err := os.WriteFile(f, []byte(p.Credentials.Password), 0o600); err != nil {
			return "", err
		}
		return f, nil
	case "thumbprint":
		if tp := p.Thumbprint; tp != "" {
			return vsphere.NormalizeThumbprint(tp)
		}
		if p.Conn == nil {
			return "", ErrNoThumbprint
		}
		if tp := p.Conn.ServerThumbprint(ctx); tp != "" {
			return tp, nil
		}
		return "", fmt.Errorf("cannot read the server certificate of %s", p.Conn.Hostname())
	case "vm_moref":
		return p.VMRef, nil
	case "snapshot_moref":
		if p.SnapshotRef == "" {
			return "", errors.New("a restore writes no snapshot: remove {snapshot_moref} from the restore NBD command")
		}
		return p.SnapshotRef, nil
	case "disk_file":
		return p.Disk.FileName, nil
	case "disk_local_path":
		return p.LocalPath(ctx, p.Disk.FileName)
	case "vm":
		return url.PathEscape(p.VMName), nil
	case "disk":
		return p.Disk.Name, nil
	}
	return "", fmt.Errorf("unknown placeholder")
}

// expand fills tmpl for the disk.
func (p nbdPlaceholders) expand(ctx context.Context, tmpl string) ([]string, error) {
	return expandTemplate(tmpl, func(name string) (string, error) { return p.value(ctx, name) })
}
