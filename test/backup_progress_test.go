package test

import (
	"math/rand/v2"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestBackupProgressOnTerminal runs `cairn backup` on a terminal (a pty
// made by script(1)): it draws one progress line per disk, each ending at
// 100 %; without a terminal it draws nothing.
func TestBackupProgressOnTerminal(t *testing.T) {
	testutil.RequireTools(t, "script")
	sim, env := cliSim(t)
	repo := cliRepo(t)
	g, _ := sim.Guest("app")
	rng := rand.New(rand.NewPCG(7, 8))
	for disk := range 2 {
		if err := g.WriteRandom(disk, 0, 4<<20, rng); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{buildCairn(t), "--repo", repo, "backup", "--vcenter", sim.URL.String(), "--thumbprint", sim.Thumbprint, "--transport", "file", "--vm", "app"}
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	cmd := exec.Command("script", "-q", "-e", "-c", strings.Join(quoted, " "), "/dev/null")
	cmd.Env = append(cmd.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cairn backup on a terminal: %v\n%s", err, out)
	}
	for _, d := range diskNames(t, sim, "app") {
		line := regexp.MustCompile(`app/` + regexp.QuoteMeta(d) + ` +\[#{30}\] 100\.0% 4\.0 MiB/4\.0 MiB`)
		if !line.Match(out) {
			t.Errorf("no finished progress line for disk %s in:\n%q", d, out)
		}
	}
	// Without a terminal (new changes, so there is something to read):
	// the results only, no drawing.
	if err := g.WriteRandom(0, 0, 1<<20, rng); err != nil {
		t.Fatal(err)
	}
	res := runCairn(t, env, args[1:]...)
	if res.code != 0 || !strings.Contains(res.stdout, "read 1.0 MiB") {
		t.Fatalf("backup without a terminal: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if strings.Contains(res.stderr, "\x1b[") || strings.Contains(res.stderr, "[####") {
		t.Errorf("progress drawn without a terminal: %q", res.stderr)
	}
}
