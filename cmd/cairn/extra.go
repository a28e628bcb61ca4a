package main

import "github.com/urfave/cli/v2"

// extraCommands are the commands of other parts of cairn (mount, files,
// backup, serve, lab); each part adds its own file with a function that
// returns its commands, and lists it here.
func extraCommands() []*cli.Command {
	var cmds []*cli.Command
	cmds = append(cmds, mountCommands()...)
	cmds = append(cmds, fileCommands()...)
	cmds = append(cmds, findCommands()...)
	cmds = append(cmds, diffCommand())
	cmds = append(cmds, configCommands()...)
	cmds = append(cmds, backupCommands()...)
	cmds = append(cmds, labCommands()...)
	cmds = append(cmds, serveCommands()...)
	cmds = append(cmds, bootCommands()...)
	cmds = append(cmds, restoreCommands()...)
	return cmds
}
