package test

import (
	"math/rand/v2"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestRestoreProgressOnTerminal runs `cairn restore vm` on a terminal (a
// pty made by script(1)) through nfc and through nbd: one progress line
// per disk, each ending at 100 % of the disk's data.
func TestRestoreProgressOnTerminal(t *testing.T) {
	testutil.RequireTools(t, "script", "nbdkit")
	sim, env := cliSim(t)
	repo := cliRepo(t)
	g, _ := sim.Guest("app")
	rng := rand.New(rand.NewPCG(9, 10))
	for disk := range 2 {
		if err := g.WriteRandom(disk, 0, 4<<20, rng); err != nil {
			t.Fatal(err)
		}
	}
	mustCairnEnv(t, env, "--repo", repo, "backup", "--vcenter", sim.URL.String(), "--thumbprint", sim.Thumbprint, "--transport", "file", "--vm", "app")
	for _, tr := range []string{"nfc", "nbd"} {
		args := []string{buildCairn(t), "--repo", repo, "restore", "vm", "--vcenter", sim.URL.String(), "--thumbprint", sim.Thumbprint,
			"--vm", "app", "--name", "app-" + tr, "--transport", tr, "--nbd-command", restoreNBDCommand}
		quoted := make([]string, len(args))
		for i, a := range args {
			quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		cmd := exec.Command("script", "-q", "-e", "-c", strings.Join(quoted, " "), "/dev/null")
		cmd.Env = append(cmd.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("cairn restore on a terminal: %v\n%s", err, out)
		}
		for _, d := range diskNames(t, sim, "app") {
			line := regexp.MustCompile(`app-` + tr + `/` + regexp.QuoteMeta(d) + ` +\[#{30}\] 100\.0% 4\.0 MiB/4\.0 MiB`)
			if !line.Match(out) {
				t.Errorf("%s: no finished progress line for disk %s in:\n%q", tr, d, out)
			}
		}
	}
}
