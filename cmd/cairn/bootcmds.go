package main

import "github.com/urfave/cli/v2"

// bootCommands are the commands that use points as running machines.
func bootCommands() []*cli.Command {
	return []*cli.Command{nbdExportCommand(), bootCommand(), verifyBootCommand()}
}
