// Package testutil holds helpers shared by cairn's tests: checks for the
// real tools and privileges a test needs. Locally a missing prerequisite
// skips the test; under CI=true it fails it, so CI never hides a gap.
package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing skips the test locally and fails it under CI: for a
// prerequisite no Require function checks (a loop device, a tmpfs mount,
// chattr +i on the temporary directory's filesystem). what names it.
func Missing(t testing.TB, what string) {
	t.Helper()
	missing(t, what)
}

// missing skips the test locally and fails it under CI.
func missing(t testing.TB, what string) {
	t.Helper()
	if InCI() {
		t.Fatalf("prerequisite missing under CI: %s (.ci/run must install it)", what)
	}
	t.Skipf("prerequisite missing: %s", what)
}

// RequireTools skips (locally) or fails (CI) unless every named command is on PATH.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing(t, "command "+tool)
		}
	}
}

// RequireRoot skips (locally) or fails (CI) unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "root privileges")
	}
}

// RequireFUSE skips (locally) or fails (CI) unless /dev/fuse exists and the test runs as root.
func RequireFUSE(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		missing(t, "/dev/fuse")
	}
}
