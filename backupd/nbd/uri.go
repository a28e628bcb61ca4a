package nbd

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// DefaultPort is the IANA port of NBD.
const DefaultPort = "10809"

// Target says where an export is: how to reach the server and which export
// to ask for.
type Target struct {
	Network string // "tcp" or "unix"
	Address string // host:port for tcp, socket path for unix
	Export  string // export name ("" is the default export)
	TLS     bool   // require TLS (nbds:// and nbds+unix://)
}

// String renders the target as an NBD URI.
func (t Target) String() string {
	scheme := "nbd"
	if t.TLS {
		scheme = "nbds"
	}
	if t.Network == "unix" {
		q := url.Values{"socket": {t.Address}}
		return scheme + "+unix:///" + url.PathEscape(t.Export) + "?" + q.Encode()
	}
	return scheme + "://" + t.Address + "/" + url.PathEscape(t.Export)
}

// UnixTarget is the target of export on the server listening on socketPath.
func UnixTarget(socketPath, export string) Target {
	return Target{Network: "unix", Address: socketPath, Export: export}
}

// ParseURI parses an NBD URI: nbd://host[:port]/export,
// nbds://host[:port]/export, nbd+unix:///export?socket=PATH and
// nbds+unix:///export?socket=PATH. A plain absolute path is taken as a unix
// socket serving the default export.
func ParseURI(s string) (Target, error) {
	if strings.HasPrefix(s, "/") {
		return UnixTarget(s, ""), nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return Target{}, fmt.Errorf("parse nbd uri %q: %w", s, err)
	}
	var t Target
	switch u.Scheme {
	case "nbd", "nbds":
		t.Network = "tcp"
		if u.Hostname() == "" {
			return Target{}, fmt.Errorf("nbd uri %q: missing host", s)
		}
		port := u.Port()
		if port == "" {
			port = DefaultPort
		}
		t.Address = net.JoinHostPort(u.Hostname(), port)
	case "nbd+unix", "nbds+unix":
		t.Network = "unix"
		if u.Host != "" {
			return Target{}, fmt.Errorf("nbd uri %q: nbd+unix takes no host", s)
		}
		t.Address = u.Query().Get("socket")
		if t.Address == "" {
			return Target{}, fmt.Errorf("nbd uri %q: missing socket= parameter", s)
		}
	default:
		return Target{}, fmt.Errorf("nbd uri %q: unsupported scheme %q (want nbd, nbds, nbd+unix, nbds+unix)", s, u.Scheme)
	}
	t.TLS = strings.HasPrefix(u.Scheme, "nbds")
	t.Export = strings.TrimPrefix(u.Path, "/")
	if len(t.Export) > 4096 {
		return Target{}, fmt.Errorf("nbd uri %q: export name longer than 4096 bytes", s)
	}
	return t, nil
}
