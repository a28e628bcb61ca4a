package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/backupd/serve"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/blockmap/remote"
)

// TestCheckVerifyFlags: flags verify would ignore are refused with what to
// do instead.
func TestCheckVerifyFlags(t *testing.T) {
	for _, tc := range []struct {
		remote, sample, vm, point string
		want                      string // "" = accepted
	}{
		{"", "", "", "", ""},
		{"", "", "web", "latest", ""},
		{"off", "5%", "", "", ""},
		{"", "5%", "", "", "add --remote NAME"},
		{"off", "", "web", "", "drop --vm and --point"},
		{"off", "", "", "latest", "drop --vm and --point"},
	} {
		err := checkVerifyFlags(tc.remote, tc.sample, tc.vm, tc.point)
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("remote %q sample %q vm %q point %q: %v, want %q", tc.remote, tc.sample, tc.vm, tc.point, err, tc.want)
		}
	}
}

// TestRemoteNotConfiguredNamesKnown: a misspelt --remote names the
// remotes the repository has.
func TestRemoteNotConfiguredNamesKnown(t *testing.T) {
	repo := t.TempDir()
	if _, err := loadRemoteConfig(repo, "offsite"); err == nil || !strings.Contains(err.Error(), "has no remotes yet") {
		t.Fatalf("no remotes: %v", err)
	}
	if err := os.MkdirAll(remotesDir(repo), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"offsite", "cold"} {
		if err := os.WriteFile(filepath.Join(remotesDir(repo), n+".json"), []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, err := loadRemoteConfig(repo, "ofsite")
	if err == nil || !strings.Contains(err.Error(), "its remotes: cold, offsite") || !strings.Contains(err.Error(), "cairn remote add ofsite") {
		t.Fatalf("misspelt remote: %v", err)
	}
}

// TestRemoteAdviceWrongBucketOrEndpoint: a missing bucket is advised as a
// likely typo (not "create it": an empty new bucket is the wrong fix for a
// pull), an unreachable store names the endpoint.
func TestRemoteAdviceWrongBucketOrEndpoint(t *testing.T) {
	rc := &remoteConfig{Name: "offsite", Endpoint: "http://127.0.0.1:1", Bucket: "cairn-offsit"}
	err := remoteAdvice(rc, fmt.Errorf("get cairn/config: bucket cairn-offsit: %w", remote.ErrNoBucket))
	if msg := err.Error(); !strings.Contains(msg, `names bucket "cairn-offsit"`) || !strings.Contains(msg, "check its spelling") || strings.Contains(msg, "create it,") {
		t.Errorf("no bucket: %s", msg)
	}
	_, derr := net.Dial("tcp", "127.0.0.1:1")
	if derr == nil {
		t.Skip("something listens on port 1")
	}
	err = remoteAdvice(rc, fmt.Errorf("get cairn/config: %w", &url.Error{Op: "Get", URL: "http://127.0.0.1:1/", Err: derr}))
	if msg := err.Error(); !strings.Contains(msg, "http://127.0.0.1:1 (remote offsite) cannot be reached") {
		t.Errorf("unreachable: %s", msg)
	}
	if err := remoteAdvice(rc, errors.New("other")); err.Error() != "other" {
		t.Errorf("other error: %v", err)
	}
}

// TestPullAdvice: a failed pull says that nothing of the point was
// committed and how to go on; a full filesystem says so.
func TestPullAdvice(t *testing.T) {
	rc := &remoteConfig{Name: "offsite"}
	full := fmt.Errorf("pull big point P: write /r/images/1/1.img: %w", &os.PathError{Op: "write", Path: "/r/images/1/1.img", Err: syscall.ENOSPC})
	if msg := pullAdvice(rc, "/r", full, 2).Error(); !strings.Contains(msg, "filesystem is full") || !strings.Contains(msg, "2 points pulled before it stay") || !strings.Contains(msg, "df -h /r") {
		t.Errorf("full: %s", msg)
	}
	if msg := pullAdvice(rc, "/r", errors.New("get cairn/packs/x: timeout"), 0).Error(); !strings.Contains(msg, "run cairn pull --remote offsite again") {
		t.Errorf("store failure: %s", msg)
	}
	if msg := pullAdvice(rc, "/r", fmt.Errorf("x: %w", blockmap.ErrInvalid), 0).Error(); strings.Contains(msg, "again") {
		t.Errorf("invalid: %s", msg)
	}
	bs := fmt.Errorf("pull web point P: %w", &remote.BlockSizeError{Remote: 131072, Local: 65536})
	if msg := pullAdvice(rc, "/r", bs, 0).Error(); !errors.Is(bs, blockmap.ErrInvalid) || strings.Contains(msg, "again") || !strings.Contains(msg, "init --block-size 131072") {
		t.Errorf("block size: %s", msg)
	}
	if msg := remoteAdvice(rc, fmt.Errorf("extend: %w", remote.ErrNoRetention)).Error(); !strings.Contains(msg, "added without --immutable-days") {
		t.Errorf("no retention: %s", msg)
	}
}

// TestStatusReplications: `cairn status` shows each remote's last
// replicate and verify run, a failure with the first line of its error.
func TestStatusReplications(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 11, 30, 0, 0, time.UTC)
	runs := []serve.ReplicationRecord{
		{Remote: "offsite", Kind: "replicate", Trigger: "after_backup", State: "ok", End: t0, Replicated: 2, Present: 4, BytesUploaded: 1 << 20},
		{Remote: "offsite", Kind: "verify", Trigger: "schedule", State: "ok", End: t0, VerifyErrors: 1},
		{Remote: "offsite", Kind: "replicate", Trigger: "after_backup", State: "failed", End: t0.Add(time.Minute), Error: "connection refused\ncheck the endpoint"},
	}
	var b strings.Builder
	printReplications(&b, runs)
	out := b.String()
	for _, want := range []string{
		"remote offsite: last replicate (after_backup) FAILED at 2026-12-06 11:31:00: connection refused\n",
		"remote offsite: last verify (schedule) ok at 2026-12-06 11:30:00, 1 error\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status replication section lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	printReplications(&b, runs[:1])
	if !strings.Contains(b.String(), "ok at 2026-12-06 11:30:00: 2 points copied, 4 already there, 0 pruned, 1.0 MiB uploaded") {
		t.Errorf("ok run: %s", b.String())
	}
}

// TestWrongKeyHint: a wrong key names the other flag, the usual mistake
// when the right file is given the wrong way.
func TestWrongKeyHint(t *testing.T) {
	err := remoteAdvice(&remoteConfig{Name: "o", KeyFile: "/etc/cairn/pass"}, fmt.Errorf("open: %w", remote.ErrWrongKey))
	if !strings.Contains(err.Error(), "--passphrase-file /etc/cairn/pass") {
		t.Errorf("key file: %v", err)
	}
	err = remoteAdvice(&remoteConfig{Name: "o", PassphraseFile: "/etc/cairn/key"}, fmt.Errorf("open: %w", remote.ErrWrongKey))
	if !strings.Contains(err.Error(), "--key-file /etc/cairn/key") {
		t.Errorf("passphrase file: %v", err)
	}
}

// TestRestoreDiskRemoteRefused: restore disk --remote says to pull the
// point first (it was "flag provided but not defined: -remote").
func TestRestoreDiskRemoteRefused(t *testing.T) {
	app := &cli.App{Name: "cairn", Commands: []*cli.Command{restoreDiskCommand()}, Writer: io.Discard, ErrWriter: io.Discard}
	err := app.Run([]string{"cairn", "disk", "--remote", "offsite", "--vcenter", "https://vc/sdk", "--vm", "web", "--disk", "scsi0-1", "--to-vm", "db"})
	if err == nil || !strings.Contains(err.Error(), "cairn pull --remote offsite --vm web --point latest") {
		t.Fatalf("restore disk --remote: %v", err)
	}
}

// TestRemoteFlagElsewhereAdvice: a command without --remote (partitions,
// boot, nbd-export, ...) given one says how to reach a remote point.
func TestRemoteFlagElsewhereAdvice(t *testing.T) {
	app := newApp()
	app.Writer, app.ErrWriter = io.Discard, io.Discard
	err := app.Run([]string{"cairn", "--repo", t.TempDir(), "partitions", "--remote", "offsite", "--vm", "web"})
	if err == nil {
		t.Fatal("partitions --remote was accepted")
	}
	if a := adviceFor(err); !strings.Contains(a, "cairn pull --remote NAME") || !strings.Contains(a, "cairn mount --remote NAME") {
		t.Fatalf("advice for %v: %q", err, a)
	}
}

// TestRemoteVerifySummary: counts of one are singular ("1 unreferenced
// packs" read wrong) and unreferenced packs say who removes them.
func TestRemoteVerifySummary(t *testing.T) {
	got := remoteVerifySummary("off", &remote.VerifyReport{Points: 4, Packs: 4, PacksRead: 1, BlobsRead: 1, BytesRead: 1 << 20, MapsRead: 1, OrphanPacks: 1, OrphanMaps: 2})
	want := "remote off: 4 points, read 1 of 4 packs (1 blob, 1.0 MiB) and 1 block map: 0 bad blocks, 0 bad objects, 1 unreferenced pack, 2 unreferenced block maps (cairn prune --remote off deletes them once unlocked; one left without its index by an interrupted upload after a day)"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// TestMountCacheSizeNeedsRemote: --cache-size without --remote is refused
// (it was silently ignored).
func TestMountCacheSizeNeedsRemote(t *testing.T) {
	app := newApp()
	app.Writer, app.ErrWriter = io.Discard, io.Discard
	err := app.Run([]string{"cairn", "--repo", t.TempDir(), "mount", "--cache-size", "1GiB", t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "add --remote NAME, or drop --cache-size") {
		t.Fatalf("mount --cache-size without --remote: %v", err)
	}
}

// TestRemoteVMMisspelt: points --remote --vm and pull --vm of a VM the
// remote lacks name the VMs it has (points printed "0 points", exit 0).
func TestRemoteVMMisspelt(t *testing.T) {
	all := []blockmap.Point{{VM: "web", ID: "a"}, {VM: "db", ID: "b"}, {VM: "web", ID: "c"}}
	if pts, err := remoteVMPoints("off", "web", all, 0); err != nil || len(pts) != 2 {
		t.Fatalf("web: %v %v", pts, err)
	}
	_, err := remoteVMPoints("off", "wbe", all, 0)
	if err == nil || !errors.Is(err, blockmap.ErrNotFound) || !strings.Contains(err.Error(), "its VMs: db, web") {
		t.Fatalf("misspelt VM: %v", err)
	}
	if _, err := remoteVMPoints("off", "wbe", all, 1); err != nil {
		t.Fatalf("with unreadable manifests: %v", err)
	}
	if _, err := selectPull(all, "off", []string{"wbe"}, ""); err == nil || !strings.Contains(err.Error(), "its VMs: db, web") {
		t.Fatalf("pull --vm wbe: %v", err)
	}
}

// TestServeRefusesUnknownRemote: a job replicating to a remote the
// repository lacks is refused at start (and at a reload), naming the
// remotes it has; serve started and failed every replication before.
func TestServeRefusesUnknownRemote(t *testing.T) {
	repo := t.TempDir()
	if err := os.MkdirAll(remotesDir(repo), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(remoteConfigPath(repo, "offsite"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &serve.Config{Repository: repo, Jobs: []serve.Job{{Name: "nightly"}, {Name: "lab", Replicate: &serve.Replicate{Remote: "ofsite"}}}}
	err := checkServeRemotes(cfg)
	if err == nil || !strings.Contains(err.Error(), "job lab: replicate.remote") || !strings.Contains(err.Error(), "its remotes: offsite") {
		t.Fatalf("unknown remote: %v", err)
	}
	cfg.Jobs[1].Replicate.Remote = "offsite"
	if err := checkServeRemotes(cfg); err != nil {
		t.Fatalf("known remote: %v", err)
	}
}

// TestRemoteAdviceUntrustedTLS: a store whose certificate this machine
// does not trust gets advice naming the CA and SSL_CERT_FILE (it had none).
func TestRemoteAdviceUntrustedTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	_, gerr := http.Get(srv.URL)
	if gerr == nil {
		t.Fatal("a self-signed certificate was trusted")
	}
	rc := &remoteConfig{Name: "offsite", Endpoint: srv.URL}
	err := remoteAdvice(rc, fmt.Errorf("get cairn/config: %w", gerr))
	if msg := err.Error(); !strings.Contains(msg, "is not trusted here") || !strings.Contains(msg, "SSL_CERT_FILE") {
		t.Fatalf("untrusted certificate: %s", msg)
	}
}

// TestRemoteAddChecksStore: remote add refuses an endpoint without a
// scheme and a bucket name S3 refuses, registering nothing (both were
// registered and failed every later command, a disaster recovery too).
func TestRemoteAddChecksStore(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	if err := blockmap.Init(context.Background(), repo, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	creds, key := filepath.Join(dir, "creds"), filepath.Join(dir, "key")
	if err := os.WriteFile(creds, []byte("aws_access_key_id = a\naws_secret_access_key = b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, bytes.Repeat([]byte{1}, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ endpoint, bucket, want string }{
		{"127.0.0.1:9000", "cairn-offsite", "want http://HOST[:PORT]"},
		{"http://127.0.0.1:9000", "Cairn_Offsite", "not a valid S3 bucket name"},
	} {
		app := newApp()
		app.Writer, app.ErrWriter = io.Discard, io.Discard
		err := app.Run([]string{"cairn", "--repo", repo, "remote", "add", "off", "--endpoint", tc.endpoint, "--bucket", tc.bucket, "--credentials", creds, "--key-file", key})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("remote add --endpoint %s --bucket %s: %v, want %q", tc.endpoint, tc.bucket, err, tc.want)
		}
		if _, err := os.Stat(remoteConfigPath(repo, "off")); err == nil {
			t.Fatalf("remote add --endpoint %s --bucket %s registered the remote", tc.endpoint, tc.bucket)
		}
	}
}

// TestRefuseSecondServer: serve refuses a repository whose serve.json
// names a live cairn serve, and ignores one whose pid is another program.
func TestRefuseSecondServer(t *testing.T) {
	repo := t.TempDir()
	other := exec.Command("bash", "-c", "exec -a 'cairn serve --config x' sleep 30")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { other.Process.Kill(); other.Wait() }()
	plain := exec.Command("sleep", "30")
	if err := plain.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { plain.Process.Kill(); plain.Wait() }()
	write := func(pid int) {
		data := fmt.Sprintf(`{"pid": %d, "listen": "127.0.0.1:8480", "started": "2026-12-06T11:30:00Z"}`, pid)
		if err := os.WriteFile(filepath.Join(repo, serve.ServeFileName), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// /proc/PID/cmdline shows the new argv only once bash has exec'd.
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", other.Process.Pid))
		if bytes.Contains(b, []byte("cairn serve")) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	write(other.Process.Pid)
	if err := refuseSecondServer(repo); err == nil || !strings.Contains(err.Error(), "another cairn serve runs") {
		t.Fatalf("a live cairn serve: %v", err)
	}
	write(plain.Process.Pid)
	if err := refuseSecondServer(repo); err != nil {
		t.Fatalf("a pid of another program: %v", err)
	}
	os.Remove(filepath.Join(repo, serve.ServeFileName))
	if err := refuseSecondServer(repo); err != nil {
		t.Fatalf("no serve.json: %v", err)
	}
}

// TestRestoreFileRefusesRepoDest: restore-file never writes into the
// repository (export and mount refused it already; restore-file wrote
// there), with or without --remote, before anything is opened.
func TestRestoreFileRefusesRepoDest(t *testing.T) {
	repo := t.TempDir()
	for _, args := range [][]string{
		{"restore-file", "--vm", "web", "--disk", "scsi0-0", "/etc", filepath.Join(repo, "etc")},
		{"restore-file", "--remote", "off", "--vm", "web", "--disk", "scsi0-0", "/etc", repo},
	} {
		app := newApp()
		app.Writer, app.ErrWriter = io.Discard, io.Discard
		err := app.Run(append([]string{"cairn", "--repo", repo}, args...))
		if err == nil || !strings.Contains(err.Error(), "is inside the repository") {
			t.Errorf("%v: %v", args, err)
		}
	}
}
