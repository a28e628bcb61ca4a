package nfsserve

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path"
	"strings"
)

// ExportPath is the path clients mount: nfs://HOST/cairn/NAME-flat.vmdk
// ("/" is taken too).
const ExportPath = "/cairn"

// mountd answers the MOUNT protocol, version 3 (RFC 1813 appendix I):
// NULL, MNT, DUMP, UMNT, UMNTALL, EXPORT. go-nfs answers MNT itself but
// not EXPORT, which libnfs asks first, so the export runs its own.
type mountd struct {
	h   *handler
	log *slog.Logger
}

// ServeMount answers MOUNT clients on a TCP listener and a UDP socket
// (either may be nil) until ctx ends; it returns nil then.
func (e *Export) ServeMount(ctx context.Context, ln net.Listener, pc net.PacketConn) error {
	m := &mountd{h: e.h, log: e.log}
	if err := serveRPC(ctx, ln, pc, m.dispatch, e.opts.Allow, e.log); err != nil {
		return fmt.Errorf("nfs export: mount: %w", err)
	}
	return nil
}

// mountable reports whether a client may mount dir.
func mountable(dir string) bool {
	if !strings.HasPrefix(dir, "/") {
		return false
	}
	d := path.Clean(dir)
	return d == ExportPath || d == "/"
}

func (m *mountd) dispatch(prog, vers, proc uint32, rd *xdrReader) (uint32, []byte) {
	switch {
	case prog != progMount:
		return 1, nil
	case vers != 3:
		return 2, u32s(3, 3)
	}
	switch proc {
	case 0, 4: // NULL, UMNTALL
		return 0, nil
	case 1: // MNT(dirpath) -> mountres3
		dir := rd.opaque(1024)
		if rd.bad {
			return 4, nil
		}
		if !mountable(string(dir)) {
			m.log.Info("nfs export: refused a mount of another path", "path", string(dir), "export", ExportPath)
			return 0, u32s(2) // MNT3ERR_NOENT
		}
		fh := m.h.ToHandle(m.h.fs, nil)
		out := append(u32s(0), xdrOpaque(fh)...)
		return 0, append(out, u32s(2, 1, 0)...) // flavors: AUTH_UNIX, AUTH_NONE
	case 2: // DUMP: no mount list is kept
		return 0, u32s(0)
	case 3: // UMNT(dirpath)
		rd.opaque(1024)
		return 0, nil
	case 5: // EXPORT: ExportPath to everyone
		out := append(u32s(1), xdrOpaque([]byte(ExportPath))...)
		return 0, append(out, u32s(0, 0)...)
	default:
		return 3, nil
	}
}
