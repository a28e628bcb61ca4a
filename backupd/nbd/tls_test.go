package nbd

import (
	"context"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
)

func TestTLS(t *testing.T) {
	certs := t.TempDir()
	testutil.WriteTLSCerts(t, certs)
	path := sparseImage(t, 4<<20, span{0, 1 << 20})
	srv := nbdkit(t, "--tls=require", "--tls-certificates="+certs, "file", path)
	tlsURI := Target{Network: "unix", Address: srv.sock, TLS: true}.String()

	o := testOptions()
	o.TLS = &TLSOptions{CAFile: filepath.Join(certs, "ca-cert.pem")}
	c := dialT(t, tlsURI, o)
	if !c.Info().TLS || !c.StructuredReplies() {
		t.Fatalf("info %+v: want TLS and structured replies", c.Info())
	}
	if sha256.Sum256(readAll(t, c)) != fileSHA(t, path) {
		t.Fatal("bytes read over TLS differ from the file")
	}
	if ext, err := c.AllocatedExtents(context.Background()); err != nil || len(ext) != 1 {
		t.Fatalf("allocated extents over TLS: %v %v", ext, err)
	}

	ctx := context.Background()
	plain := testOptions()
	plain.Retries = -1
	if _, err := Dial(ctx, srv.uri(""), plain); !errors.Is(err, ErrTLSRequired) {
		t.Fatalf("plain dial of a TLS-only server: %v, want ErrTLSRequired", err)
	}
	// The system roots do not trust the test CA; skipping verification does.
	if _, err := Dial(ctx, tlsURI, plain); err == nil {
		t.Fatal("TLS dial without the CA succeeded")
	}
	insecure := testOptions()
	insecure.TLS = &TLSOptions{InsecureSkipVerify: true}
	c2 := dialT(t, tlsURI, insecure)
	if !c2.Info().TLS {
		t.Fatal("insecure TLS dial did not use TLS")
	}
}
