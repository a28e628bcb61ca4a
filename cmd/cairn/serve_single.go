package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/cairnbackup/cairn/backupd/serve"
)

// refuseSecondServer stops a cairn serve from starting on a repository
// another live cairn serve runs on: both would back up the same VMs, run
// retention and replication twice, and the second overwrote serve.json,
// so that cairn status saw only one. A serve.json whose pid now belongs
// to another program (a server killed with SIGKILL, its pid reused) is no
// server.
func refuseSecondServer(repoDir string) error {
	f, err := serve.ReadServeFile(repoDir)
	if errors.Is(err, serve.ErrNotServing) || err != nil || f.PID == os.Getpid() {
		return nil
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(f.PID) + "/cmdline")
	if err != nil || !bytes.Contains(cmdline, []byte("cairn")) || !bytes.Contains(cmdline, []byte("serve")) {
		return nil
	}
	return fmt.Errorf("another cairn serve runs on repository %s (pid %d, api %s, since %s): stop it first (kill %d), or see it with cairn --repo %s status",
		repoDir, f.PID, f.Listen, f.Started.UTC().Format("2006-01-02 15:04:05"), f.PID, repoDir)
}
