package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBackupCLIHooks: cairn backup's --pre-snapshot, --post-snapshot and
// --post-backup run real scripts in that order around a backup of the
// simulator, with the CAIRN_* variables and without the vCenter password
// cairn was given in its environment; --pre-snapshot-on-failure skip
// leaves the VM out without failing (the hook's last line said, the job
// recorded as skipped, no snapshot taken); a relative program is refused.
func TestBackupCLIHooks(t *testing.T) {
	sim, env := cliSim(t)
	repo := cliRepo(t)
	dir := t.TempDir()
	log := filepath.Join(dir, "hooks.log")
	envOut := filepath.Join(dir, "env.out")
	hook := filepath.Join(dir, "hook.sh")
	script := `#!/bin/sh
echo "$CAIRN_HOOK${1:+ $1} vm=$CAIRN_VM result=$CAIRN_RESULT point=$CAIRN_POINT" >> ` + log + `
env >> ` + envOut + "\n"
	if err := os.WriteFile(hook, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	lag := filepath.Join(dir, "lag.sh")
	if err := os.WriteFile(lag, []byte("#!/bin/sh\necho replica lag 600s\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	base := []string{"--repo", repo, "backup", "--vcenter", sim.URL.String(), "--thumbprint", sim.Thumbprint, "--transport", "file", "--vm", "app"}

	out := mustCairnEnv(t, env, append(base, "--pre-snapshot", hook+" freeze", "--post-snapshot", hook+" thaw", "--post-backup", hook)...)
	point := strings.Fields(out)[1]
	b, _ := os.ReadFile(log)
	want := "pre_snapshot freeze vm=app result= point=\npost_snapshot thaw vm=app result=ok point=\npost_backup vm=app result=ok point=" + point + "\n"
	if string(b) != want {
		t.Errorf("hooks ran\n%s\nwant\n%s", b, want)
	}
	if e, _ := os.ReadFile(envOut); strings.Contains(string(e), sim.Password) || strings.Contains(string(e), "CAIRN_VC_") {
		t.Errorf("a hook saw cairn's vCenter credentials")
	}

	res := runCairn(t, env, append(base, "--pre-snapshot", lag, "--pre-snapshot-on-failure", "skip")...)
	if res.code != 0 || !strings.Contains(res.stderr, "app not backed up: skipped by pre hook: pre_snapshot hook "+lag+": exit status 1: replica lag 600s") {
		t.Errorf("skip: exit %d, stderr %q", res.code, res.stderr)
	}
	if jobs := mustCairn(t, "--repo", repo, "jobs"); !strings.Contains(jobs, " skipped ") {
		t.Errorf("cairn jobs shows no skipped job:\n%s", jobs)
	} else {
		t.Logf("cairn jobs:\n%s", jobs)
	}
	res = runCairn(t, env, append(base, "--pre-snapshot", lag)...)
	if res.code != 1 || !strings.Contains(res.stderr, "backup of app failed: hook failed: pre_snapshot hook "+lag+": exit status 1: replica lag 600s") {
		t.Errorf("fail: exit %d, stderr %q", res.code, res.stderr)
	}
	res = runCairn(t, env, append(base, "--pre-snapshot", "lag.sh")...)
	if res.code == 0 || !strings.Contains(res.stderr, `--pre-snapshot "lag.sh": program "lag.sh": give its absolute path`) {
		t.Errorf("relative: exit %d, stderr %q", res.code, res.stderr)
	}
}

// TestConfigCheckHooks: cairn config check refuses a job hook whose
// program is not executable, with the line and the fix.
func TestConfigCheckHooks(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "db-freeze")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "cairn.yaml")
	if err := os.WriteFile(cfg, []byte(`repository: `+filepath.Join(dir, "repo")+`
vcenters:
  - {name: prod, url: https://vc.example.com/sdk, credentials: /etc/cairn/vc}
jobs:
  - name: nightly
    vcenter: prod
    vms: [db-1]
    schedule: "0 1 * * *"
    hooks:
      pre_snapshot: [{command: [`+prog+`, --host, db-1], on_failure: skip}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runCairn(t, nil, "config", "check", cfg)
	want := `cairn.yaml:10: job "nightly": hooks: pre_snapshot: program ` + prog + ` is not executable (chmod +x it)`
	if res.code == 0 || !strings.Contains(res.stderr, want) {
		t.Errorf("exit %d, stderr %q; want %q", res.code, res.stderr, want)
	}
}
