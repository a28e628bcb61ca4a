// Package esxsimtest starts an esxsim simulator for a test and logs a
// govmomi client into it, verifying the server by its thumbprint.
package esxsimtest

import (
	"context"
	"crypto/x509"
	"net/url"
	"testing"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"

	"github.com/cairnbackup/cairn/internal/esxsim"
)

// Start starts a simulator whose datastore lives in t.TempDir() (unless
// opts.DatastoreDir is set) and closes it when the test ends.
func Start(t testing.TB, opts esxsim.Options) *esxsim.Sim {
	t.Helper()
	if opts.DatastoreDir == "" {
		opts.DatastoreDir = t.TempDir()
	}
	sim, err := esxsim.Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("start esxsim: %v", err)
	}
	t.Cleanup(sim.Close)
	return sim
}

// Client logs in to sim with its credentials over TLS pinned to its
// thumbprint; the session is logged out when the test ends.
func Client(t testing.TB, sim *esxsim.Sim) *govmomi.Client {
	t.Helper()
	c, err := Login(context.Background(), sim, sim.User, sim.Password)
	if err != nil {
		t.Fatalf("login to esxsim: %v", err)
	}
	t.Cleanup(func() { _ = c.Logout(context.Background()) })
	return c
}

// Login connects to sim with the given credentials, trusting only its thumbprint.
func Login(ctx context.Context, sim *esxsim.Sim, user, password string) (*govmomi.Client, error) {
	sc := soap.NewClient(sim.URL, false)
	sc.SetThumbprint(sim.URL.Host, sim.Thumbprint)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(sim.CertificatePEM)
	sc.DefaultTransport().TLSClientConfig.RootCAs = pool
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return nil, err
	}
	c := &govmomi.Client{Client: vc, SessionManager: session.NewManager(vc)}
	if err := c.Login(ctx, url.UserPassword(user, password)); err != nil {
		return nil, err
	}
	return c, nil
}
