package blockmap

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// requireTools is internal/testutil's RequireTools for this package's own
// tests, which cannot import testutil (it imports blockmap): a missing
// command skips the test locally and fails it under CI=true.
func requireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missingPrereq(t, "command "+tool)
		}
	}
}

// missingPrereq skips the test locally and fails it under CI=true.
func missingPrereq(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("prerequisite missing under CI: %s (.ci/run must install it)", what)
	}
	t.Skipf("prerequisite missing: %s", what)
}

// onSmallTmpfs runs the test named name again in a child process (a
// SIGBUS ends only the child) with a tmpfs of size mounted for it, and
// returns the child's output. In the child (env names the tmpfs's
// directory) it calls child with that directory and returns child=true.
func onSmallTmpfs(t *testing.T, name, env, size string, run func(t *testing.T, dir string)) (out []byte, child bool, err error) {
	t.Helper()
	if dir := os.Getenv(env); dir != "" {
		run(t, dir)
		return nil, true, nil
	}
	if os.Geteuid() != 0 {
		missingPrereq(t, "root privileges (a tmpfs mount)")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", mnt).CombinedOutput(); err != nil {
		missingPrereq(t, fmt.Sprintf("a tmpfs mount: %v %s", err, out))
	}
	defer exec.Command("umount", mnt).Run()
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.v")
	cmd.Env = append(os.Environ(), env+"="+mnt)
	out, err = cmd.CombinedOutput()
	return out, false, err
}

func tail(b []byte) string {
	s := string(b)
	if len(s) > 4000 {
		s = "..." + s[len(s)-4000:]
	}
	return s
}
