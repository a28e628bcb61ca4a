package main

import (
	"fmt"
	"os"

	"github.com/cairnbackup/cairn/backupd/serve"
)

// checkServeRemotes refuses a configuration whose job replicates to a
// remote the repository does not have (a misspelt name): without it
// serve started and every replication failed at its time, in the log
// only. At start the server does not start; on SIGHUP the old
// configuration stays.
func checkServeRemotes(cfg *serve.Config) error {
	for _, j := range cfg.Jobs {
		if j.Replicate == nil || j.Replicate.Remote == "" {
			continue
		}
		if _, err := os.Stat(remoteConfigPath(cfg.Repository, j.Replicate.Remote)); err == nil {
			continue
		}
		return fmt.Errorf("job %s: replicate.remote: %w", j.Name, remoteNotConfigured(cfg.Repository, j.Replicate.Remote))
	}
	return nil
}
