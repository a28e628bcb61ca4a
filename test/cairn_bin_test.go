package test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// buildCairn builds the cairn binary once per test run and returns its path.
func buildCairn(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cairn-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "cairn")
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Dir(filepath.Dir(file))
		// The same flags as the Makefile's build; cairn-lab (which
		// `cairn lab` runs) goes beside cairn.
		for _, prog := range []string{"cairn", "cairn-lab"} {
			cmd := exec.Command("go", "build", "-tags", "urfave_cli_no_docs", "-trimpath", "-o", filepath.Join(dir, prog), "./cmd/"+prog)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = &buildError{err: err, out: string(out)}
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatalf("build cairn: %v", buildErr)
	}
	return binPath
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

// cairnResult is the outcome of one cairn invocation.
type cairnResult struct {
	stdout, stderr string
	code           int
}

// runCairn runs the cairn binary with args and returns what it printed and
// its exit code.
func runCairn(t testing.TB, env []string, args ...string) cairnResult {
	t.Helper()
	cmd := exec.Command(buildCairn(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	res := cairnResult{stdout: so.String(), stderr: se.String()}
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			res.code = ee.ExitCode()
		} else {
			t.Fatalf("run cairn %v: %v", args, err)
		}
	}
	return res
}

// mustCairn runs cairn and fails the test unless it exits 0; it returns stdout.
func mustCairn(t testing.TB, args ...string) string {
	t.Helper()
	res := runCairn(t, nil, args...)
	if res.code != 0 {
		t.Fatalf("cairn %s: exit %d: %s", strings.Join(args, " "), res.code, res.stderr)
	}
	return res.stdout
}
