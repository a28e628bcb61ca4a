package test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cairnbackup/cairn/internal/lab"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// requireChromium returns Debian's chromium (testutil.RequireTools: a
// skip locally, a failure under CI=true; scripts/install-deps.sh installs it).
func requireChromium(t *testing.T) string {
	t.Helper()
	testutil.RequireTools(t, "chromium")
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal(err)
	}
	return chromium
}

// consoleServe starts the cairn binary bin as `cairn serve` over repo on a
// free loopback address (stopped with SIGTERM when the test ends) and
// returns its API once it answers, its config file and its log.
func consoleServe(t *testing.T, bin, repo string) (serveAPI, string, *serveLogBuffer) {
	t.Helper()
	listen := serveFreeAddr(t)
	cfgFile := filepath.Join(t.TempDir(), "cairn.yaml")
	if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf("repository: %s\nlisten: %s\ntimezone: UTC\n", repo, listen)), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &serveLogBuffer{}
	srv, exited := serveStartChild(t, bin, logs, "serve", "--config", cfgFile)
	t.Cleanup(func() {
		srv.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			t.Errorf("serve did not stop within 30s of SIGTERM")
		}
	})
	api := serveAPI{base: "http://" + listen, repo: repo}
	serveWaitFor(t, "serve to answer", exited, logs, func() bool {
		var v any
		return api.getJSON("/api/v1/vms", &v)
	})
	return api, cfgFile, logs
}

// consoleRenderer returns a function that loads the console of base at
// the fragment frag in a fresh headless Chromium and returns the DOM once
// the page's requests are answered (virtual time runs until the page is
// idle, at most the budget). A Content-Security-Policy violation or an
// uncaught script error in the page's console fails the test.
func consoleRenderer(chromium, base string) func(t *testing.T, frag string) string {
	return func(t *testing.T, frag string) string {
		t.Helper()
		profile := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
			"--no-first-run", "--user-data-dir="+profile, "--virtual-time-budget=4000", "--dump-dom", "--enable-logging=stderr", "--v=0",
			base+"/ui/#"+frag)
		cmd.Env = append(os.Environ(), "HOME="+profile)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("chromium: %v\n%s", err, stderr.String())
		}
		for _, l := range strings.Split(stderr.String(), "\n") {
			if strings.Contains(l, ":CONSOLE") && (strings.Contains(l, "Content Security Policy") || strings.Contains(l, "Uncaught")) {
				t.Errorf("the console logged: %s", l)
			}
		}
		return string(out)
	}
}

// writeServeConfig writes cfg as dir/cairn.yaml, initialises its
// repository and returns the file's path.
func writeServeConfig(t *testing.T, dir string, cfg lab.ServeConfig) string {
	t.Helper()
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "cairn.yaml")
	if err := os.WriteFile(cfgFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	mustCairn(t, "--repo", cfg.Repository, "init")
	return cfgFile
}
