package nbd

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"time"
)

// dialConn connects to t and runs the handshake.
func dialConn(ctx context.Context, t Target, o Options, tcfg *tls.Config, probe bool) (net.Conn, io.ReadWriter, ExportInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, t.Network, t.Address)
	if err != nil {
		return nil, nil, ExportInfo{}, fmt.Errorf("dial %s: %w", t, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	cfg := handshakeConfig{
		export:     t.Export,
		structured: !o.NoStructuredReplies,
		contexts:   o.contexts(),
		probe:      probe,
	}
	if tcfg != nil {
		cfg.startTLS = func() (io.ReadWriter, error) {
			tc := tls.Client(nc, tcfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				return nil, err
			}
			return tc, nil
		}
	}
	stream, info, err := negotiate(nc, cfg)
	if err == nil && !stop() {
		err = ctx.Err()
	}
	if err != nil {
		_ = nc.Close()
		return nil, nil, info, fmt.Errorf("handshake with %s: %w", t, err)
	}
	_ = nc.SetDeadline(time.Time{})
	return nc, stream, info, nil
}

// Probe asks the server about an export with NBD_OPT_INFO, without
// entering transmission, and hangs up.
func Probe(ctx context.Context, uri string, opts Options) (ExportInfo, error) {
	t, err := ParseURI(uri)
	if err != nil {
		return ExportInfo{}, err
	}
	o := opts.withDefaults()
	tcfg, err := tlsConfig(t, o.TLS)
	if err != nil {
		return ExportInfo{}, err
	}
	nc, _, info, err := dialConn(ctx, t, o, tcfg, true)
	if err != nil {
		return info, err
	}
	_ = nc.Close()
	return info, nil
}
