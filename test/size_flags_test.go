package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInitBlockSizeSuffixes: init's --block-size takes the size syntax of
// every other size flag (64k, 256KiB, 1M; 1024-based, like --limit-rate);
// `--block-size 64k` used to be refused as not a number. A size out of
// range or not a power of two is refused naming the flag and the range,
// and leaves no repository behind.
func TestInitBlockSizeSuffixes(t *testing.T) {
	dir := t.TempDir()
	for i, tc := range []struct {
		arg  string
		want int // block_size in cairn.json; 0: refused
		msg  []string
	}{
		{"64k", 65536, nil},
		{"256KiB", 256 << 10, nil},
		{"1M", 1 << 20, nil},
		{"131072", 128 << 10, nil},
		{"32k", 0, []string{"--block-size 32k", "from 64k to 1M", "65536..1048576"}},
		{"2M", 0, []string{"--block-size 2M", "from 64k to 1M"}},
		{"96k", 0, []string{"--block-size 96k", "power of two", "64k, 128k, 256k, 512k or 1M"}},
		{"64kb", 0, []string{"--block-size", `unknown unit "kb"`, "64k"}},
		{"lots", 0, []string{"--block-size", "lots"}},
	} {
		repo := filepath.Join(dir, "r"+string(rune('a'+i)))
		res := runCairn(t, nil, "--repo", repo, "init", "--block-size", tc.arg)
		if tc.want == 0 {
			if res.code != 2 {
				t.Errorf("init --block-size %s: exit %d, want 2 (usage):\n%s%s", tc.arg, res.code, res.stdout, res.stderr)
			}
			for _, m := range tc.msg {
				if !strings.Contains(res.stderr, m) {
					t.Errorf("init --block-size %s: error does not say %q:\n%s", tc.arg, m, res.stderr)
				}
			}
			if _, err := os.Stat(repo); !os.IsNotExist(err) {
				t.Errorf("init --block-size %s: refused but left %s (%v)", tc.arg, repo, err)
			}
			continue
		}
		if res.code != 0 {
			t.Errorf("init --block-size %s: exit %d:\n%s", tc.arg, res.code, res.stderr)
			continue
		}
		data, err := os.ReadFile(filepath.Join(repo, "cairn.json"))
		if err != nil {
			t.Fatal(err)
		}
		var meta struct {
			BlockSize int `json:"block_size"`
		}
		if err := json.Unmarshal(data, &meta); err != nil || meta.BlockSize != tc.want {
			t.Errorf("init --block-size %s: cairn.json block_size %d (%v), want %d", tc.arg, meta.BlockSize, err, tc.want)
		}
	}
}
