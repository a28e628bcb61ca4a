package test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRemoteLimitRateCLI: remote add --limit-rate stores a default that
// remote list shows and replicate uses; replicate's --limit-rate
// overrides it for one run (unlimited lifts it); zero, negative and
// garbage rates are refused naming the flag and an example, before
// anything is written.
func TestRemoteLimitRateCLI(t *testing.T) {
	f := newRemoteFixture(t)
	_, repo := repoWithOnePoint(t, 2<<20, 7)
	for _, bad := range []string{"0", "-5M", "garbage", "50MB"} {
		res := runCairn(t, nil, "--repo", repo, "remote", "add", "bad", "--endpoint", f.c.Endpoint, "--bucket", f.bucket,
			"--credentials", f.creds, "--passphrase-file", f.pass, "--limit-rate", bad)
		if res.code == 0 || !strings.Contains(res.stderr, "--limit-rate") || !strings.Contains(res.stderr, "50M") {
			t.Errorf("remote add --limit-rate %s: exit %d: %s", bad, res.code, res.stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(repo, "remotes", "bad.json")); err == nil {
		t.Fatal("a remote with a bad --limit-rate was added")
	}
	f.add(t, repo, "wan", "--limit-rate", "20M")
	f.add(t, repo, "lan")
	list := mustCairn(t, "--repo", repo, "remote", "list")
	for _, line := range strings.Split(list, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		last := fields[len(fields)-1]
		switch fields[0] {
		case "NAME":
			if !strings.HasSuffix(line, "LIMIT RATE") {
				t.Errorf("remote list header %q has no LIMIT RATE column", line)
			}
		case "wan":
			if last != "20MiB/s" {
				t.Errorf("remote list: %q, want the limit 20MiB/s", line)
			}
		case "lan":
			if last != "-" {
				t.Errorf("remote list: %q, want no limit (-)", line)
			}
		}
	}
	mustCairn(t, "--repo", repo, "remote", "init", "wan")
	before := f.objectCount(t)
	for _, tc := range []struct{ cmd, rate, want string }{
		{"replicate", "0", "unlimited"},
		{"replicate", "-1k", "positive"},
		{"replicate", "fast", "not a number"},
		{"replicate", "10 parsecs", "unknown unit"},
		{"pull", "0", "unlimited"},
	} {
		res := runCairn(t, nil, "--repo", repo, tc.cmd, "--remote", "wan", "--limit-rate", tc.rate)
		if res.code == 0 || !strings.Contains(res.stderr, "--limit-rate") || !strings.Contains(res.stderr, tc.want) || !strings.Contains(res.stderr, "50M") {
			t.Errorf("%s --limit-rate %q: exit %d: %s", tc.cmd, tc.rate, res.code, res.stderr)
		}
	}
	if after := f.objectCount(t); after != before {
		t.Fatalf("%d objects after refused runs, %d before", after, before)
	}
	// Reading commands check the flag before they start, and want --remote with it.
	for _, args := range [][]string{
		{"mount", "--remote", "wan", "--limit-rate", "0", t.TempDir()},
		{"export", "--remote", "wan", "--vm", "a", "--disk", "d0", "--limit-rate", "lots", filepath.Join(t.TempDir(), "x.img")},
	} {
		res := runCairn(t, nil, append([]string{"--repo", repo}, args...)...)
		if res.code == 0 || !strings.Contains(res.stderr, "--limit-rate") || !strings.Contains(res.stderr, "50M") {
			t.Errorf("%s: exit %d: %s", strings.Join(args, " "), res.code, res.stderr)
		}
	}
	if res := runCairn(t, nil, "--repo", repo, "export", "--vm", "a", "--disk", "d0", "--limit-rate", "10M", filepath.Join(t.TempDir(), "x.img")); res.code == 0 || !strings.Contains(res.stderr, "give --remote NAME") {
		t.Errorf("export --limit-rate without --remote: exit %d: %s", res.code, res.stderr)
	}
	res := runCairn(t, nil, "--repo", repo, "replicate", "--remote", "wan")
	if res.code != 0 || !strings.Contains(res.stderr, "bandwidth limit") || !strings.Contains(res.stderr, "20MiB/s") || !strings.Contains(res.stderr, "default") {
		t.Fatalf("replicate with the remote's default limit: exit %d: %s", res.code, res.stderr)
	}
	res = runCairn(t, nil, "--repo", repo, "replicate", "--remote", "wan", "--limit-rate", "100Mbit")
	if res.code != 0 || !strings.Contains(res.stderr, "11.92MiB/s") || !strings.Contains(res.stderr, "--limit-rate") {
		t.Fatalf("replicate --limit-rate 100Mbit: exit %d: %s", res.code, res.stderr)
	}
	res = runCairn(t, nil, "--repo", repo, "replicate", "--remote", "wan", "--limit-rate", "unlimited")
	if res.code != 0 || !strings.Contains(res.stderr, "no bandwidth limit") || strings.Contains(res.stderr, "20MiB/s") {
		t.Fatalf("replicate --limit-rate unlimited: exit %d: %s", res.code, res.stderr)
	}
	// remote limit changes the default, or lifts it.
	if res := runCairn(t, nil, "--repo", repo, "remote", "limit", "wan", "0"); res.code == 0 || !strings.Contains(res.stderr, "unlimited") {
		t.Fatalf("remote limit wan 0: exit %d: %s", res.code, res.stderr)
	}
	mustCairn(t, "--repo", repo, "remote", "limit", "wan", "1.5G")
	if list := mustCairn(t, "--repo", repo, "remote", "list"); !strings.Contains(list, "1.5GiB/s") {
		t.Fatalf("remote list after remote limit wan 1.5G:\n%s", list)
	}
	// Reads of the remote use its default too; their --limit-rate overrides it.
	out := filepath.Join(t.TempDir(), "d0.img")
	res = runCairn(t, nil, "--repo", repo, "export", "--remote", "wan", "--vm", "a", "--disk", "d0", out)
	if res.code != 0 || !strings.Contains(res.stderr, "bandwidth limit") || !strings.Contains(res.stderr, "1.5GiB/s") {
		t.Fatalf("export --remote with the remote's default limit: exit %d: %s", res.code, res.stderr)
	}
	res = runCairn(t, nil, "--repo", repo, "export", "--remote", "wan", "--vm", "a", "--disk", "d0", "--limit-rate", "64M", out+".2")
	if res.code != 0 || !strings.Contains(res.stderr, "64MiB/s") {
		t.Fatalf("export --remote --limit-rate 64M: exit %d: %s", res.code, res.stderr)
	}
	if a, b := limitTestRead(t, out), limitTestRead(t, out+".2"); !bytes.Equal(a, b) || len(a) != 8<<20 {
		t.Fatalf("the exports differ or are short (%d, %d bytes)", len(a), len(b))
	}
	mustCairn(t, "--repo", repo, "remote", "limit", "wan", "unlimited")
	res = runCairn(t, nil, "--repo", repo, "points", "--remote", "wan")
	if res.code != 0 || strings.Contains(res.stderr, "bandwidth limit") {
		t.Fatalf("points after the limit was lifted: exit %d: %s", res.code, res.stderr)
	}
}

func limitTestRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
