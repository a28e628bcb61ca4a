package backupd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The spawned NBD server must not see the vCenter password (or any other
// credential variable) in its environment; ordinary variables pass.
func TestNBDServerEnvironmentHasNoCredentials(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("CAIRN_VC_USER", "administrator@vsphere.local")
	t.Setenv("CAIRN_VC_PASSWORD", "vc-s3cret")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "aws-s3cret")
	t.Setenv("CAIRN_API_TOKEN", "api-s3cret")
	t.Setenv("LD_LIBRARY_PATH", "/opt/vddk/lib64")
	script := filepath.Join(dir, "server.sh")
	envOut := filepath.Join(dir, "env.txt")
	socket := filepath.Join(dir, "nbd.sock")
	// Stands in for nbdkit: records its environment, then "serves".
	body := "#!/bin/sh\nenv > " + envOut + "\ntouch " + socket + "\nexec sleep 30\n"
	if err := os.WriteFile(script, []byte(body), 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := startNBDServer(context.Background(), []string{script}, socket, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.stop()
	data, err := os.ReadFile(envOut)
	if err != nil {
		t.Fatal(err)
	}
	env := string(data)
	for _, secret := range []string{"vc-s3cret", "aws-s3cret", "api-s3cret", "CAIRN_VC_USER"} {
		if strings.Contains(env, secret) {
			t.Errorf("the NBD server's environment holds %q:\n%s", secret, env)
		}
	}
	if !strings.Contains(env, "LD_LIBRARY_PATH=/opt/vddk/lib64") {
		t.Errorf("LD_LIBRARY_PATH (which the VDDK plugin needs) was not passed on:\n%s", env)
	}
}

func TestCredentialEnv(t *testing.T) {
	for name, want := range map[string]bool{
		"CAIRN_VC_PASSWORD": true, "CAIRN_VC_USER": true, "AWS_SECRET_ACCESS_KEY": true, "AWS_ACCESS_KEY_ID": true,
		"AWS_SESSION_TOKEN": true, "GITHUB_TOKEN": true, "PGPASSWORD": true, "SSH_PRIVATE_KEY": true, "MY_API_KEY": true,
		"PATH": false, "HOME": false, "LD_LIBRARY_PATH": false, "TMPDIR": false, "CAIRN_REPO": false, "LANG": false,
	} {
		if got := credentialEnv(name); got != want {
			t.Errorf("credentialEnv(%q) = %v, want %v", name, got, want)
		}
	}
}
