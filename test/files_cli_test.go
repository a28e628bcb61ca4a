package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestFilesAndRestoreFileAsAUserSeesThem walks `cairn files` and
// `restore-file` over an ext4 guest the way a new administrator would:
// the listing reads like ls -l (modes as ls prints them, owners, device
// numbers), and a mistyped path gets an error naming the path, with no
// DEST made. Before: modes were Go's (Dcrw-r--r--, urwxr-xr-x), no
// owner or device was shown, a missing path was `stat nope: "nope" in
// directory 2: file does not exist`, and restore-file of it created DEST's
// parents and ended "the rest is restored in DEST".
func TestFilesAndRestoreFileAsAUserSeesThem(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	for _, d := range []string{"dev", "etc", "usr/bin", "tmp", "home/alice"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(unix.Mknod(filepath.Join(src, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(unix.Mknod(filepath.Join(src, "dev/sda"), unix.S_IFBLK|0o660, int(unix.Mkdev(8, 0))))
	must(os.Chmod(filepath.Join(src, "dev/null"), 0o666))
	must(os.Chmod(filepath.Join(src, "dev/sda"), 0o660))
	must(os.WriteFile(filepath.Join(src, "usr/bin/sudo"), []byte("#!/bin/true\n"), 0o755))
	must(os.Chmod(filepath.Join(src, "usr/bin/sudo"), 0o4755|os.ModeSetuid))
	must(os.Chmod(filepath.Join(src, "tmp"), 0o777|os.ModeSticky))
	must(os.WriteFile(filepath.Join(src, "home/alice/notes"), []byte("n\n"), 0o640))
	must(os.Chown(filepath.Join(src, "home/alice/notes"), 1000, 1001))
	must(os.WriteFile(filepath.Join(src, "etc/hostname"), []byte("h\n"), 0o644))
	must(os.Symlink("hostname", filepath.Join(src, "etc/hn")))
	must(os.WriteFile(filepath.Join(src, "etc/tab\tname"), nil, 0o644))
	must(os.WriteFile(filepath.Join(src, "etc/new\nline"), nil, 0o644))
	must(os.WriteFile(filepath.Join(src, "home/alice/caf\xe9"), nil, 0o644))
	img := filepath.Join(dir, "ext4.img")
	sh(t, "mkfs.ext4", "-q", "-F", "-d", src, img, "16M")
	repoDir := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repoDir, "init")
	mustCairn(t, "--repo", repoDir, "import", "--vm", "u", "--disk", "sda", img)
	vol := []string{"--vm", "u", "--disk", "sda", "--part", "whole"}
	files := func(args ...string) string {
		return mustCairn(t, append(append([]string{"--repo", repoDir, "files"}, vol...), args...)...)
	}

	for p, want := range map[string][]string{
		"/dev":        {"crw-rw-rw-  0:0  1:3 ", "brw-rw----  0:0  8:0 "},
		"/usr/bin":    {"-rwsr-xr-x  0:0"},
		"/":           {"drwxrwxrwt  0:0"},
		"/home/alice": {"-rw-r-----  1000:1001"},
	} {
		got := files(p)
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("cairn files %s: no %q in\n%s", p, w, got)
			}
		}
	}
	var ents []struct {
		Name, Mode, Device string
		UID                *uint32
	}
	if err := json.Unmarshal([]byte(files("--json", "/dev")), &ents); err != nil {
		t.Fatal(err)
	}
	if len(ents) != 2 || ents[0].Mode != "crw-rw-rw-" || ents[0].Device != "1:3" || ents[0].UID == nil || *ents[0].UID != 0 {
		t.Errorf("cairn files --json /dev: %+v", ents)
	}

	res := runCairn(t, nil, append(append([]string{"--repo", repoDir, "files"}, vol...), "/etc/nope")...)
	if res.code == 0 || !strings.Contains(res.stderr, "/etc/nope does not exist") || strings.Contains(res.stderr, "directory 2") {
		t.Errorf("files /etc/nope: exit %d, %s", res.code, res.stderr)
	}
	res = runCairn(t, nil, append(append([]string{"--repo", repoDir, "files"}, vol...), "/etc/hostname/x")...)
	if res.code == 0 || !strings.Contains(res.stderr, "/etc/hostname/x: a part of the path before its last name is not a directory") {
		t.Errorf("files /etc/hostname/x: exit %d, %s", res.code, res.stderr)
	}
	// A symlink given as PATH is shown as ls -l shows it: the link.
	if got := files("/etc/hn"); !strings.Contains(got, "lrwxrwxrwx") || !strings.Contains(got, "hn -> hostname") {
		t.Errorf("cairn files /etc/hn:\n%s", got)
	}
	// A disk without a partition table (mkfs on the whole disk, as data
	// disks often are): --part left out takes its one volume, for files,
	// restore-file, history and search alike; partitions names it whole.
	// Before: files and restore-file asked for --part whole.
	wholeDiskWithoutPart(t, repoDir, dir)
	// --part 1 given on it: refused, naming the choice.
	res = runCairn(t, nil, "--repo", repoDir, "files", "--vm", "u", "--disk", "sda", "--part", "1", "/")
	if res.code == 0 || !strings.Contains(res.stderr, "give --part whole") || !strings.Contains(res.stderr, "whole (ext4)") {
		t.Errorf("files --part 1 on a disk without a table: exit %d, %s", res.code, res.stderr)
	}
	// Names with a tab or a newline are quoted, as ls quotes them: one
	// line per entry, the columns intact.
	etc := files("/etc")
	if !strings.Contains(etc, `"tab\tname"`) || !strings.Contains(etc, `"new\nline"`) || strings.Count(etc, "\n") != 4 {
		t.Errorf("cairn files /etc:\n%s", etc)
	}
	// A name that is not UTF-8 (Latin-1): quoted in the text, its bytes
	// in the JSON (a JSON string cannot carry them).
	if got := files("/home/alice"); !strings.Contains(got, `"caf\xe9"`) {
		t.Errorf("cairn files /home/alice:\n%s", got)
	}
	var named []struct {
		Name      string
		NameBytes []byte `json:"name_bytes"`
	}
	if err := json.Unmarshal([]byte(files("--json", "/home/alice")), &named); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range named {
		found = found || string(e.NameBytes) == "caf\xe9"
	}
	if !found {
		t.Errorf("cairn files --json /home/alice: no name_bytes of caf\\xe9: %+v", named)
	}
	// Two paths: refused, not the second silently ignored.
	res = runCairn(t, nil, append(append([]string{"--repo", repoDir, "files"}, vol...), "/etc", "/usr")...)
	if res.code == 0 || !strings.Contains(res.stderr, "give one PATH") {
		t.Errorf("files /etc /usr: exit %d, %s%s", res.code, res.stdout, res.stderr)
	}
	out := filepath.Join(dir, "out")
	res = runCairn(t, nil, append(append([]string{"--repo", repoDir, "restore-file"}, vol...), "/etc/nope", filepath.Join(out, "x"))...)
	if res.code == 0 || !strings.Contains(res.stderr, "/etc/nope does not exist") {
		t.Errorf("restore-file /etc/nope: exit %d, %s%s", res.code, res.stdout, res.stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("restore-file of a missing path made %s", out)
	}
	// A directory onto an existing file: refused, nothing restored.
	existing := filepath.Join(dir, "existing")
	must(os.WriteFile(existing, []byte("mine\n"), 0o600))
	res = runCairn(t, nil, append(append([]string{"--repo", repoDir, "restore-file"}, vol...), "/etc", existing)...)
	if res.code == 0 || !strings.Contains(res.stderr, "nothing restored") || strings.Contains(res.stderr, "the rest is restored") {
		t.Errorf("restore-file /etc onto a file: exit %d, %s%s", res.code, res.stdout, res.stderr)
	}
}

// wholeDiskWithoutPart checks point u (disk sda: ext4 on the whole disk,
// no partition table) through every command that takes --disk/--part,
// with --part left out.
func wholeDiskWithoutPart(t *testing.T, repoDir, dir string) {
	t.Helper()
	sel := []string{"--vm", "u", "--disk", "sda"}
	cairn := func(cmd string, args ...string) cairnResult {
		return runCairn(t, nil, append(append([]string{"--repo", repoDir, cmd}, sel...), args...)...)
	}
	if res := cairn("files", "/etc"); res.code != 0 || !strings.Contains(res.stdout, "hostname") {
		t.Errorf("files without --part on a disk without a table: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	dest := filepath.Join(dir, "whole-out", "hostname")
	if res := cairn("restore-file", "/etc/hostname", dest); res.code != 0 {
		t.Errorf("restore-file without --part on a disk without a table: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	} else if b, err := os.ReadFile(dest); err != nil || string(b) != "h\n" {
		t.Errorf("restored hostname: %q %v", b, err)
	}
	if res := cairn("history", "/etc/hostname"); res.code != 0 || !strings.Contains(res.stdout, "v1") || !strings.Contains(res.stdout, "--part whole") {
		t.Errorf("history without --part: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if res := cairn("search", "hostname"); res.code != 0 || !strings.Contains(res.stdout, "etc/hostname") {
		t.Errorf("search without --part: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if res := cairn("partitions"); res.code != 0 || !regexp.MustCompile(`(?m)^sda +none +whole +0 .* ext4`).MatchString(res.stdout) {
		t.Errorf("partitions of a disk without a table: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
}
