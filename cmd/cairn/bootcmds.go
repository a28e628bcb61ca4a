package main

import (
	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/backupd/boot"
)

// bootCommands are the commands that use points as running machines.
func bootCommands() []*cli.Command {
	return []*cli.Command{nbdExportCommand(), nfsExportCommand(), bootCommand(), verifyBootCommand()}
}

// bootColumn is the BOOT column of `cairn points`: the last boot check's
// verdict, "-" when none ran.
func bootColumn(repoDir, vm, point string) string {
	r, ok := boot.LoadResult(repoDir, vm, point)
	if !ok {
		return "-"
	}
	return r.Verdict
}
