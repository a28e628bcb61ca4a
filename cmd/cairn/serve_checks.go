package main

import (
	"fmt"

	"github.com/cairnbackup/cairn/backupd/serve"
	"github.com/cairnbackup/cairn/backupd/vsphere"
)

// checkServeCredentials reads the credentials file of every vCenter a
// job backs up from: a missing, unreadable, too open (not 0600) or
// malformed file used to be noticed only when a job first ran (for a
// nightly job, the next night). At start the server does not start; on
// SIGHUP the old configuration stays.
func checkServeCredentials(cfg *serve.Config) error {
	used := map[string]bool{}
	for _, j := range cfg.Jobs {
		used[j.VCenter] = true
	}
	for _, vc := range cfg.VCenters {
		if !used[vc.Name] {
			continue
		}
		if _, err := vsphere.LoadCredentials(vc.Credentials); err != nil {
			return fmt.Errorf("vcenter %s: %w", vc.Name, err)
		}
	}
	return nil
}
