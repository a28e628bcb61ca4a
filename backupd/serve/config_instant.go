package serve

import (
	"net"

	"gopkg.in/yaml.v3"
)

// InstantConfig is the instant: section: how cairn serve runs instant
// recovery sessions (POST /api/v1/instant).
type InstantConfig struct {
	// MaxSessions caps the sessions running at once (default
	// DefaultInstantSessions): each serves a VM's disks over NFS.
	MaxSessions int
	// SessionDir holds a directory per session: the overlays that take the
	// VM's writes (default DefaultInstantDir).
	SessionDir string
	// NFSHost is the appliance's address as the ESXi hosts reach it, for a
	// request without "nfs_host"; the session's NFS server listens there.
	NFSHost string
	// NFSPort and PortmapPort are where a session's NFS server and
	// portmapper listen (default 2049 and 111, the ports ESXi asks; 0 for
	// NFSPort: any free port, the portmapper tells it).
	NFSPort     int
	PortmapPort int
}

// Instant recovery defaults.
const (
	DefaultInstantSessions = 1
	DefaultInstantDir      = "/var/lib/cairn/instant"
)

func defaultInstant() InstantConfig {
	return InstantConfig{MaxSessions: DefaultInstantSessions, SessionDir: DefaultInstantDir, NFSPort: 2049, PortmapPort: 111}
}

func (p *parser) instant(n *yaml.Node) (InstantConfig, error) {
	ic := defaultInstant()
	m, err := p.fields(n, "instant", "max_sessions", "session_dir", "nfs_host", "nfs_port", "portmap_port")
	if err != nil {
		return ic, err
	}
	if v := m["max_sessions"]; v != nil {
		if err := v.Decode(&ic.MaxSessions); err != nil || ic.MaxSessions < 0 || ic.MaxSessions > 64 {
			return ic, p.errf(v, "instant: max_sessions: want a number from 0 (no instant recovery) to 64")
		}
	}
	for key, dst := range map[string]*int{"nfs_port": &ic.NFSPort, "portmap_port": &ic.PortmapPort} {
		if v := m[key]; v != nil {
			if err := v.Decode(dst); err != nil || *dst < 0 || *dst > 65535 {
				return ic, p.errf(v, "instant: %s: want a TCP port number (0-65535)", key)
			}
		}
	}
	if ic.PortmapPort == 0 {
		return ic, p.errf(m["portmap_port"], "instant: portmap_port: 0 is no port the ESXi host could ask: give 111 (or the port your test client asks)")
	}
	if dir, err := p.str(m, "session_dir", "instant", false, n); err != nil {
		return ic, err
	} else if dir != "" {
		ic.SessionDir = dir
	}
	if ic.NFSHost, err = p.str(m, "nfs_host", "instant", false, n); err != nil {
		return ic, err
	}
	if ic.NFSHost != "" && net.ParseIP(ic.NFSHost) == nil {
		return ic, p.errf(m["nfs_host"], "instant: nfs_host %q: want an IP address of this machine (the ESXi hosts mount the datastore from it)", ic.NFSHost)
	}
	return ic, nil
}
