package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// refuseNegativeFlags makes every command refuse a negative value of its
// number and duration flags (counts, limits, timeouts): none has a
// meaning for a negative value, and defaulting it silently (as a
// negative --keep-last once did, deleting all but the newest point)
// hides the mistake.
func refuseNegativeFlags(cmds []*cli.Command) {
	for _, cmd := range cmds {
		refuseNegativeFlags(cmd.Subcommands)
		before := cmd.Before
		cmd.Before = func(c *cli.Context) error {
			if err := checkNonNegative(c); err != nil {
				return err
			}
			if before != nil {
				return before(c)
			}
			return nil
		}
	}
}

func checkNonNegative(c *cli.Context) error {
	for _, f := range c.Command.Flags {
		name := f.Names()[0]
		if !c.IsSet(name) {
			continue
		}
		switch f.(type) {
		case *cli.IntFlag, *cli.Int64Flag:
			if v := c.Int64(name); v < 0 {
				return &usageError{Command: commandPath(c), Problem: fmt.Sprintf("--%s %d: give 0 or more", name, v)}
			}
		case *cli.DurationFlag:
			if v := c.Duration(name); v < 0 {
				return &usageError{Command: commandPath(c), Problem: fmt.Sprintf("--%s %s: give a duration of 0 or more (like 30s)", name, v)}
			}
		}
	}
	return nil
}
