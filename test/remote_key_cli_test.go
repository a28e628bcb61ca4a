package test

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
)

// configBytes reads the bucket's cairn/config through the S3 API.
func (f *remoteFixture) configBytes(t *testing.T) []byte {
	t.Helper()
	obj, err := f.s3.GetObject(context.Background(), f.bucket, "cairn/config", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	data, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func readRemoteJSON(t *testing.T, repo, name string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repo, "remotes", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRemoteRekeyCLI: cairn remote rekey with a wrong current key fails
// with "wrong key" and writes nothing; from a passphrase to a key file and
// back to a new passphrase, each time the registration names the new
// file, the key cache is dropped, the old secret no longer opens the
// remote and the new one exports the point byte for byte.
func TestRemoteRekeyCLI(t *testing.T) {
	f := newRemoteFixture(t)
	dir, repo := repoWithOnePoint(t, 3<<20, 41)
	f.add(t, repo, "offsite")
	mustCairn(t, "--repo", repo, "remote", "init", "offsite")
	mustCairn(t, "--repo", repo, "replicate", "--remote", "offsite")
	local := exportSHA(t, repo, "a", "latest", "d0")
	sameRemote := func(name string) {
		t.Helper()
		out := filepath.Join(t.TempDir(), "a.img")
		mustCairn(t, "--repo", repo, "export", "--remote", name, "--vm", "a", "--point", "latest", "--disk", "d0", out)
		if fileSHA(t, out) != local {
			t.Fatalf("export --remote %s differs from the local point", name)
		}
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyFile := write("new.key", "0123456789abcdef0123456789abcdef")
	// A wrong current key: refused, nothing written.
	bad := write("bad.pass", "not the passphrase")
	mustCairn(t, "--repo", repo, "remote", "add", "wrong", "--endpoint", f.c.Endpoint, "--bucket", f.bucket, "--credentials", f.creds, "--passphrase-file", bad)
	before, n := f.configBytes(t), f.objectCount(t)
	res := runCairn(t, nil, "--repo", repo, "remote", "rekey", "wrong", "--new-key-file", keyFile)
	if res.code == 0 || !strings.Contains(res.stderr, "wrong key") || !strings.Contains(res.stderr, "rekey needs the current key") {
		t.Fatalf("rekey with a wrong current key: exit %d: %s", res.code, res.stderr)
	}
	if string(f.configBytes(t)) != string(before) || f.objectCount(t) != n {
		t.Fatal("a rekey with a wrong current key changed the bucket")
	}
	if m := readRemoteJSON(t, repo, "wrong"); m["passphrase_file"] != bad {
		t.Fatalf("the failed rekey changed the registration: %v", m)
	}
	// The same key again is refused.
	if res := runCairn(t, nil, "--repo", repo, "remote", "rekey", "offsite", "--new-passphrase-file", f.pass); res.code == 0 || !strings.Contains(res.stderr, "same key") {
		t.Fatalf("rekey to the same passphrase: exit %d: %s", res.code, res.stderr)
	}
	// A key file that others may read is refused before anything happens.
	loose := write("loose.key", "0123456789abcdef0123456789abcdef")
	os.Chmod(loose, 0o644)
	if res := runCairn(t, nil, "--repo", repo, "remote", "rekey", "offsite", "--new-key-file", loose); res.code == 0 || !strings.Contains(res.stderr, "chmod 600") {
		t.Fatalf("rekey to a readable key file: exit %d: %s", res.code, res.stderr)
	}
	// Passphrase -> key file.
	out := mustCairn(t, "--repo", repo, "remote", "rekey", "offsite", "--new-key-file", keyFile)
	t.Log(out)
	if !strings.Contains(out, "not re-encrypted") || !strings.Contains(out, keyFile) {
		t.Fatalf("rekey said:\n%s", out)
	}
	if m := readRemoteJSON(t, repo, "offsite"); m["key_file"] != keyFile || m["passphrase_file"] != nil {
		t.Fatalf("registration after the rekey: %v", m)
	}
	if string(f.configBytes(t)) == string(before) {
		t.Fatal("the config is unchanged")
	}
	// The old passphrase (registered as "wrong" now points at it).
	if err := os.WriteFile(bad, []byte("a long offsite passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if res := runCairn(t, nil, "--repo", repo, "points", "--remote", "wrong"); res.code == 0 || !strings.Contains(res.stderr, "wrong key") {
		t.Fatalf("points with the old passphrase: exit %d: %s", res.code, res.stderr)
	}
	sameRemote("offsite")
	cache := filepath.Join(repo, "remotes", "offsite.cache", "key")
	if _, err := os.Stat(cache); err != nil {
		t.Fatalf("no key cache after a command with the key file: %v", err)
	}
	// Key file -> a new passphrase.
	newPass := write("new.pass", "the second administrator's passphrase\n")
	mustCairn(t, "--repo", repo, "remote", "passwd", "offsite", "--new-passphrase-file", newPass)
	if m := readRemoteJSON(t, repo, "offsite"); m["passphrase_file"] != newPass || m["key_file"] != nil {
		t.Fatalf("registration after the second rekey: %v", m)
	}
	if _, err := os.Stat(cache); !os.IsNotExist(err) {
		t.Fatalf("the key cache survived the rekey: %v", err)
	}
	sameRemote("offsite")
	mustCairn(t, "--repo", repo, "remote", "add", "oldkey", "--endpoint", f.c.Endpoint, "--bucket", f.bucket, "--credentials", f.creds, "--key-file", keyFile)
	if res := runCairn(t, nil, "--repo", repo, "points", "--remote", "oldkey"); res.code == 0 || !strings.Contains(res.stderr, "wrong key") {
		t.Fatalf("points with the old key file: exit %d: %s", res.code, res.stderr)
	}
	// An interrupted rekey (the bucket changed, the registration not):
	// rekeying again with the same new file updates the registration.
	out = mustCairn(t, "--repo", repo, "remote", "rekey", "oldkey", "--new-passphrase-file", newPass)
	if !strings.Contains(out, "already opens with the new") {
		t.Fatalf("rekey of a remote already rekeyed said:\n%s", out)
	}
	sameRemote("oldkey")
}

// TestRemoteRemoveCLI: cairn remote remove refuses while a serve job
// (--config) replicates to the remote, naming the job; then unregisters it
// (registration and cache gone, the bucket untouched) and prints the
// command that registers it again, which works.
func TestRemoteRemoveCLI(t *testing.T) {
	f := newRemoteFixture(t)
	dir, repo := repoWithOnePoint(t, 2<<20, 42)
	f.add(t, repo, "offsite")
	mustCairn(t, "--repo", repo, "remote", "init", "offsite")
	mustCairn(t, "--repo", repo, "replicate", "--remote", "offsite")
	objects := f.objectCount(t)
	cfg := filepath.Join(dir, "cairn.yaml")
	yaml := "repository: " + repo + "\nvcenters: [{name: v, url: https://vc/sdk, credentials: /c}]\njobs:\n" +
		"  - name: nightly\n    vcenter: v\n    vms: [a]\n    schedule: 1h\n    replicate: {remote: offsite, after_backup: true}\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	res := runCairn(t, nil, "--repo", repo, "remote", "remove", "offsite", "--config", cfg)
	if res.code == 0 || !strings.Contains(res.stderr, "job nightly") || !strings.Contains(res.stderr, "--force") {
		t.Fatalf("remove of a remote a job replicates to: exit %d: %s", res.code, res.stderr)
	}
	if _, err := os.Stat(filepath.Join(repo, "remotes", "offsite.json")); err != nil {
		t.Fatalf("the refused remove removed the registration: %v", err)
	}
	out := mustCairn(t, "--repo", repo, "remote", "remove", "offsite")
	t.Log(out)
	if !strings.Contains(out, "was not touched") {
		t.Fatalf("remove said:\n%s", out)
	}
	for _, p := range []string{"offsite.json", "offsite.cache"} {
		if _, err := os.Stat(filepath.Join(repo, "remotes", p)); !os.IsNotExist(err) {
			t.Fatalf("%s after remove: %v", p, err)
		}
	}
	if strings.Contains(mustCairn(t, "--repo", repo, "remote", "list"), "offsite") {
		t.Fatal("remote list still shows the removed remote")
	}
	if n := f.objectCount(t); n != objects {
		t.Fatalf("remove changed the bucket: %d objects, %d before", n, objects)
	}
	if res := runCairn(t, nil, "--repo", repo, "points", "--remote", "offsite"); res.code == 0 || !strings.Contains(res.stderr, "cairn remote add offsite") {
		t.Fatalf("points of a removed remote: exit %d: %s", res.code, res.stderr)
	}
	_, again, ok := strings.Cut(out, "to register it again: cairn ")
	if !ok {
		t.Fatalf("remove did not say how to register it again:\n%s", out)
	}
	args := append([]string{"--repo", repo}, strings.Fields(strings.TrimSpace(again))...)
	mustCairn(t, append(args, "--pack-size", "1048576")...)
	if pts := remotePoints(t, repo, "offsite"); len(pts) != 1 {
		t.Fatalf("the registered-again remote lists %d points", len(pts))
	}
	if res := runCairn(t, nil, "--repo", repo, "remote", "remove", "nosuch"); res.code == 0 || !strings.Contains(res.stderr, "not configured") {
		t.Fatalf("remove of an unknown remote: exit %d: %s", res.code, res.stderr)
	}
}

// TestRemoteStatsCLI: cairn remote stats --json counts what the S3 API
// lists (packs, their bytes) and what was replicated (points, data).
func TestRemoteStatsCLI(t *testing.T) {
	f := newRemoteFixture(t)
	_, repo := repoWithOnePoint(t, 3<<20, 43)
	f.add(t, repo, "offsite")
	mustCairn(t, "--repo", repo, "remote", "init", "offsite")
	mustCairn(t, "--repo", repo, "replicate", "--remote", "offsite")
	var got struct {
		Stats struct {
			Points    int   `json:"points"`
			Packs     int   `json:"packs"`
			PackBytes int64 `json:"pack_bytes"`
			Logical   int64 `json:"logical_bytes"`
			VMs       []struct {
				VM     string `json:"vm"`
				Points int    `json:"points"`
			} `json:"vms"`
		} `json:"stats"`
	}
	if err := json.Unmarshal([]byte(mustCairn(t, "--repo", repo, "remote", "stats", "offsite", "--json")), &got); err != nil {
		t.Fatal(err)
	}
	var packs int
	var bytes int64
	for o := range f.s3.ListObjects(context.Background(), f.bucket, minio.ListObjectsOptions{Prefix: "cairn/packs/", Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		packs++
		bytes += o.Size
	}
	s := got.Stats
	if s.Points != 1 || len(s.VMs) != 1 || s.VMs[0].VM != "a" || s.Packs != packs || s.PackBytes != bytes || s.Logical != 3<<20 {
		t.Fatalf("stats %+v; the store lists %d packs of %d bytes", s, packs, bytes)
	}
	out := mustCairn(t, "--repo", repo, "remote", "stats", "offsite")
	t.Log(out)
	if !strings.Contains(out, "1 point of 1 VM") || !strings.Contains(out, "immutable: no") {
		t.Fatalf("stats said:\n%s", out)
	}
}
