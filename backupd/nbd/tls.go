package nbd

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
)

// tlsConfig builds the client TLS configuration for a target, or nil when
// the target does not use TLS.
func tlsConfig(t Target, o *TLSOptions) (*tls.Config, error) {
	if !t.TLS && o == nil {
		return nil, nil
	}
	if o == nil {
		o = &TLSOptions{}
	}
	if o.Config != nil {
		return o.Config.Clone(), nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.InsecureSkipVerify}
	cfg.ServerName = o.ServerName
	if cfg.ServerName == "" {
		cfg.ServerName = "localhost"
		if t.Network == "tcp" {
			if host, _, err := net.SplitHostPort(t.Address); err == nil {
				cfg.ServerName = host
			}
		}
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read nbd tls ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("nbd tls ca %s: no PEM certificate found", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	if o.CertFile != "" || o.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load nbd tls client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
