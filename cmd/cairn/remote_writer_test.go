package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/blockmap/remote"
)

// TestApplianceWriterStable: a repository keeps one writer id (made once,
// 0600, outside the remotes' caches and registrations); another
// repository gets another.
func TestApplianceWriterStable(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	w1, err := applianceWriter(a)
	if err != nil {
		t.Fatal(err)
	}
	w2, err := applianceWriter(a)
	if err != nil || w2.ID != w1.ID || len(w1.ID) != 32 || w1.Repo != a {
		t.Fatalf("writer of one repository: %+v then %+v (%v)", w1, w2, err)
	}
	if st, err := os.Stat(writerIDFile(a)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("writer id file: %v %v", st, err)
	}
	if got := configuredRemotes(a); len(got) != 0 {
		t.Fatalf("the writer id file is listed as a remote: %v", got)
	}
	w3, err := applianceWriter(b)
	if err != nil || w3.ID == w1.ID {
		t.Fatalf("two repositories share writer id %s (%v)", w3.ID, err)
	}
}

// TestOtherWriterAdvice: the refusal names the other appliance and the
// fix (takeover here, or stop replicating, or another bucket).
func TestOtherWriterAdvice(t *testing.T) {
	rc := &remoteConfig{Name: "offsite", Bucket: "b"}
	err := remoteAdvice(rc, fmt.Errorf("replicate: %w", &remote.OtherWriterError{Op: "replicate", Owner: remote.Writer{ID: "abc", Host: "old-host", Repo: "/srv/cairn"}}))
	for _, want := range []string{"repository /srv/cairn on host old-host", "writer id abc", "cairn remote takeover offsite", "bucket of its own"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("advice lacks %q:\n%v", want, err)
		}
	}
}

// TestRecoverySheet: the sheet names every piece to keep and the
// commands of the rebuild and the drill, with the repository's block
// size; a passphrase remote names its passphrase file.
func TestRecoverySheet(t *testing.T) {
	repo := t.TempDir()
	if err := os.WriteFile(filepath.Join(repo, "cairn.json"), []byte(`{"format":1,"block_size":131072}`), 0o600); err != nil {
		t.Fatal(err)
	}
	rc := &remoteConfig{Name: "offsite", Endpoint: "https://s3.example.net", Bucket: "cairn-offsite", Region: "eu-1",
		CredentialsFile: "/etc/cairn/s3.cred", KeyFile: "/etc/cairn/offsite.key", ImmutableDays: 30}
	sheet := recoverySheet(repo, rc)
	for _, want := range []string{
		"endpoint:        https://s3.example.net", "bucket:          cairn-offsite", "region:          eu-1",
		"/etc/cairn/s3.cred   (COPY", "/etc/cairn/offsite.key   (COPY", "30 days", "block size:      131072",
		"init --block-size 131072", "remote add offsite --endpoint https://s3.example.net --bucket cairn-offsite --region eu-1 --credentials CREDFILE --key-file KEYFILE",
		"remote takeover offsite", "verify --remote offsite --sample 5%", "serve config:",
	} {
		if !strings.Contains(sheet, want) {
			t.Errorf("sheet lacks %q:\n%s", want, sheet)
		}
	}
	rc.KeyFile, rc.PassphraseFile = "", "/etc/cairn/pass"
	if sheet := recoverySheet(repo, rc); !strings.Contains(sheet, "passphrase file: /etc/cairn/pass") || !strings.Contains(sheet, "--passphrase-file PASSFILE") {
		t.Errorf("passphrase sheet:\n%s", sheet)
	}
}
