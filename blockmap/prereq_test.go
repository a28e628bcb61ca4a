package blockmap

import (
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
