package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/backupd/nbd"
)

// nbdTLSFlags configure TLS (NBD_OPT_STARTTLS) towards NBD servers, for
// import sources and for backups over --nbd-url or --nbd-command.
func nbdTLSFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "nbd-tls-ca", Usage: "NBD: PEM `FILE` of the CAs that sign the server's certificate (turns TLS on; nbds:// URIs use the system CAs without it)"},
		&cli.StringFlag{Name: "nbd-tls-cert", Usage: "NBD: client certificate PEM `FILE` (with --nbd-tls-key; turns TLS on)"},
		&cli.StringFlag{Name: "nbd-tls-key", Usage: "NBD: client key PEM `FILE`"},
	}
}

// nbdTLSOptions turns the --nbd-tls-* flags into TLS options; nil when
// none is given (then only nbds:// URIs use TLS, with the system CAs).
func nbdTLSOptions(c *cli.Context) (*nbd.TLSOptions, error) {
	ca, cert, key := c.String("nbd-tls-ca"), c.String("nbd-tls-cert"), c.String("nbd-tls-key")
	if ca == "" && cert == "" && key == "" {
		return nil, nil
	}
	if (cert == "") != (key == "") {
		return nil, fmt.Errorf("give --nbd-tls-cert and --nbd-tls-key together")
	}
	for _, f := range []string{ca, cert, key} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("NBD TLS file: %w", err)
		}
	}
	return &nbd.TLSOptions{CAFile: ca, CertFile: cert, KeyFile: key}, nil
}
