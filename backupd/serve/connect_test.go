package serve

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd/vsphere"
)

// TestConnectAdvice: serve's vCenter errors name the config's keys (the
// library names none, and serve has no flags to give): an untrusted
// certificate says which thumbprint to pin, missing credentials where to
// give them.
func TestConnectAdvice(t *testing.T) {
	a := startAPIServer(t, apiSim(t), apiConfig, nil)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	vc := *a.s.cfg.VCenterByName("sim")
	vc.Thumbprint, vc.Insecure = "", false
	_, _, err := a.s.connect(ctx, &vc, a.s.cfg.Jobs[0], log)
	var untrusted *vsphere.UntrustedCertError
	if !errors.As(err, &untrusted) || !strings.Contains(err.Error(), "set thumbprint: "+untrusted.Thumbprint) || strings.Contains(err.Error(), "--") {
		t.Errorf("untrusted certificate: %v", err)
	}
	t.Setenv(vsphere.EnvUser, "")
	t.Setenv(vsphere.EnvPassword, "")
	vc.Credentials = ""
	_, _, err = a.s.connect(ctx, &vc, a.s.cfg.Jobs[0], log)
	if !errors.Is(err, vsphere.ErrNoCredentials) || !strings.Contains(err.Error(), "give credentials: FILE") {
		t.Errorf("no credentials: %v", err)
	}
}
