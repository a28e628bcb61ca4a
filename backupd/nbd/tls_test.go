package nbd

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeCerts makes a CA and a server certificate for localhost in the
// layout nbdkit --tls-certificates expects.
func writeCerts(t *testing.T, dir string) {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	caKey, srvKey := key(), key()
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cairn test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	write("ca-cert.pem", "CERTIFICATE", caDER)
	write("server-cert.pem", "CERTIFICATE", srvDER)
	write("server-key.pem", "PRIVATE KEY", keyDER)
}

func TestTLS(t *testing.T) {
	certs := t.TempDir()
	writeCerts(t, certs)
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
