package nbd

import (
	"crypto/tls"
	"log/slog"
	"time"
)

// Options tune a Client. The zero value is usable: every field has a
// default.
type Options struct {
	// Connections is how many connections to open when the server
	// advertises NBD_FLAG_CAN_MULTI_CONN (default 4). Otherwise one.
	Connections int
	// MaxInFlight is how many requests may be outstanding per connection
	// (default 16).
	MaxInFlight int
	// MaxRequestSize caps one read request in bytes (default 256 KiB); the
	// server's maximum block size always applies too.
	MaxRequestSize uint32
	// MetaContexts are metadata contexts to negotiate besides
	// base:allocation, for example "qemu:dirty-bitmap:backup-1".
	MetaContexts []string
	// NoStructuredReplies keeps to simple replies (no holes, no block
	// status).
	NoStructuredReplies bool
	// TLS enables NBD_OPT_STARTTLS; nbds:// URIs enable it with defaults.
	TLS *TLSOptions
	// DialTimeout bounds connecting plus the handshake (default 30s).
	DialTimeout time.Duration
	// StallTimeout fails the requests of a connection that received no
	// byte for this long while requests were outstanding, and reconnects
	// (default 60s; negative disables).
	StallTimeout time.Duration
	// Retries is how many times a failed request is retried after
	// transient errors: dropped or stalled connections and EIO, ENOMEM or
	// ESHUTDOWN from the server (default 5; negative means none).
	Retries int
	// RetryBackoff is the first delay between attempts, doubled each time
	// (default 200ms) up to MaxRetryBackoff (default 10s).
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration
	// Logger receives connection events (default slog.Default()).
	Logger *slog.Logger
}

// TLSOptions configure NBD_OPT_STARTTLS.
type TLSOptions struct {
	// CAFile is a PEM file of CA certificates that sign the server's
	// certificate (default: the system roots).
	CAFile string
	// CertFile and KeyFile are an optional client certificate.
	CertFile, KeyFile string
	// ServerName overrides the name checked in the server certificate
	// (default: the host of the URI; "localhost" for unix sockets).
	ServerName string
	// InsecureSkipVerify accepts any server certificate.
	InsecureSkipVerify bool
	// Config, when set, is used (cloned) instead of the fields above.
	Config *tls.Config
}

// withDefaults fills in unset fields.
func (o Options) withDefaults() Options {
	if o.Connections <= 0 {
		o.Connections = 4
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 16
	}
	if o.MaxRequestSize == 0 {
		o.MaxRequestSize = 256 << 10
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 30 * time.Second
	}
	switch {
	case o.StallTimeout == 0:
		o.StallTimeout = 60 * time.Second
	case o.StallTimeout < 0:
		o.StallTimeout = 0
	}
	switch {
	case o.Retries == 0:
		o.Retries = 5
	case o.Retries < 0:
		o.Retries = 0
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = 200 * time.Millisecond
	}
	if o.MaxRetryBackoff <= 0 {
		o.MaxRetryBackoff = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// contexts lists the metadata contexts to ask for.
func (o Options) contexts() []string {
	out := []string{ContextBaseAllocation}
	for _, c := range o.MetaContexts {
		if c != ContextBaseAllocation {
			out = append(out, c)
		}
	}
	return out
}
