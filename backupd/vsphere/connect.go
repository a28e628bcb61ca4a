package vsphere

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/session/keepalive"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// ConnectOptions say how to reach and trust a vCenter or ESXi host.
type ConnectOptions struct {
	// URL is the SDK endpoint, "https://HOST/sdk"; a bare host name gets
	// https:// and /sdk added.
	URL         string
	Credentials Credentials
	// Thumbprint pins the server certificate by its SHA-256 (or SHA-1)
	// thumbprint, hex with or without colons; the system roots are not
	// needed then.
	Thumbprint string
	// Insecure accepts any certificate (logged as a warning).
	Insecure bool
	// KeepAlive is the idle interval between keepalive calls that keep the
	// session from expiring during long jobs (default 5 minutes).
	KeepAlive time.Duration
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// Conn is a logged-in vSphere session.
type Conn struct {
	Client *vim25.Client
	URL    *url.URL
	log    *slog.Logger
	sm     *session.Manager
	// proxyMu serializes reconfigurations of the proxy VM: concurrent
	// hot-adds would pick the same controller unit.
	proxyMu sync.Mutex
}

// ErrNoURL means no vCenter URL was given.
var ErrNoURL = errors.New("no vCenter URL")

// ParseURL turns "HOST", "HOST:PORT" or "https://HOST/sdk" into the SDK URL.
func ParseURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, ErrNoURL
	}
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("vCenter URL %q: %w", s, err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("vCenter URL %q: scheme must be https", s)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("vCenter URL %q has no host", s)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/sdk"
	}
	u.User = nil
	return u, nil
}

// NormalizeThumbprint returns a thumbprint as govmomi and vSphere show it:
// upper-case hex bytes separated by colons.
func NormalizeThumbprint(tp string) (string, error) {
	hex := strings.ToUpper(strings.NewReplacer(":", "", " ", "", "-", "").Replace(strings.TrimSpace(tp)))
	if len(hex) != 64 && len(hex) != 40 {
		return "", fmt.Errorf("thumbprint %q: want a SHA-256 thumbprint (32 hex bytes, colons optional)", tp)
	}
	var parts []string
	for i := 0; i < len(hex); i += 2 {
		if strings.Trim(hex[i:i+2], "0123456789ABCDEF") != "" {
			return "", fmt.Errorf("thumbprint %q is not hexadecimal", tp)
		}
		parts = append(parts, hex[i:i+2])
	}
	return strings.Join(parts, ":"), nil
}

// Connect logs in. The password is sent only to the server and never
// logged.
func Connect(ctx context.Context, opts ConnectOptions) (*Conn, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	u, err := ParseURL(opts.URL)
	if err != nil {
		return nil, err
	}
	if opts.Credentials.User == "" || opts.Credentials.Password == "" {
		return nil, errors.New("connect to vCenter: no user name or password")
	}
	sc := soap.NewClient(u, opts.Insecure)
	switch {
	case opts.Insecure:
		log.Warn("TLS certificate of the vCenter is NOT verified (--insecure): anyone on the path can read the credentials and the data; pin it with --thumbprint instead", "vcenter", u.Host)
	case opts.Thumbprint != "":
		tp, err := NormalizeThumbprint(opts.Thumbprint)
		if err != nil {
			return nil, err
		}
		sc.SetThumbprint(u.Host, tp)
	}
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return nil, explainTLS(ctx, u, opts, err)
	}
	interval := opts.KeepAlive
	if interval <= 0 {
		interval = 5 * time.Minute
	}
	vc.RoundTripper = keepalive.NewHandlerSOAP(vc.RoundTripper, interval, nil)
	sm := session.NewManager(vc)
	if err := sm.Login(ctx, url.UserPassword(opts.Credentials.User, opts.Credentials.Password)); err != nil {
		if fault.Is(err, &types.InvalidLogin{}) {
			return nil, fmt.Errorf("log in to %s as %s: wrong user name or password", u.Host, opts.Credentials.User)
		}
		return nil, fmt.Errorf("log in to %s as %s: %w", u.Host, opts.Credentials.User, err)
	}
	log.Info("connected to vSphere", "vcenter", u.Host, "user", opts.Credentials.User, "api", vc.ServiceContent.About.ApiVersion)
	return &Conn{Client: vc, URL: u, log: log, sm: sm}, nil
}

// Close logs out (with its own short timeout, so it works after the job's
// context was cancelled).
func (c *Conn) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.sm.Logout(ctx); err != nil {
		return fmt.Errorf("log out of %s: %w", c.URL.Host, err)
	}
	return nil
}

// Logger is the connection's logger.
func (c *Conn) Logger() *slog.Logger { return c.log }

// Hostname is the server's host name (no port).
func (c *Conn) Hostname() string { return c.URL.Hostname() }

// explainTLS turns a certificate failure into an error that names the
// server's thumbprint (an *UntrustedCertError when nothing was pinned).
func explainTLS(ctx context.Context, u *url.URL, opts ConnectOptions, err error) error {
	tp := serverThumbprint(ctx, u)
	if tp == "" {
		return fmt.Errorf("connect to %s: %w", u.Host, err)
	}
	if opts.Thumbprint != "" {
		return fmt.Errorf("connect to %s: the server certificate's SHA-256 thumbprint is %s, not the pinned %s: refusing it (%v)", u.Host, tp, opts.Thumbprint, err)
	}
	if opts.Insecure {
		return fmt.Errorf("connect to %s: %w", u.Host, err)
	}
	return &UntrustedCertError{Host: u.Host, Thumbprint: tp, Err: err}
}

// UntrustedCertError means the server's certificate is not trusted by this
// machine; Thumbprint is its SHA-256 thumbprint, which the CLI and cairn
// serve say how to pin once the user has compared it with vCenter's.
type UntrustedCertError struct {
	Host, Thumbprint string
	Err              error
}

func (e *UntrustedCertError) Error() string {
	return fmt.Sprintf("connect to %s: the server certificate is not trusted (%v); its SHA-256 thumbprint is %s", e.Host, e.Err, e.Thumbprint)
}

func (e *UntrustedCertError) Unwrap() error { return e.Err }

// serverThumbprint fetches the server certificate without trusting it,
// only to name its thumbprint in an error message.
func serverThumbprint(ctx context.Context, u *url.URL) string {
	host := u.Host
	if _, _, err := net.SplitHostPort(host); err != nil {
		host = net.JoinHostPort(host, "443")
	}
	d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // only to read the thumbprint
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return ""
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return ""
	}
	return soap.ThumbprintSHA256(certs[0])
}

// ServerThumbprint is the SHA-256 thumbprint of the server's certificate
// ("" when it cannot be read), for NBD servers that must pin it (VDDK).
func (c *Conn) ServerThumbprint(ctx context.Context) string {
	return serverThumbprint(ctx, c.URL)
}
