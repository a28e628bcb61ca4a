package main

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/urfave/cli/v2"
)

// exitUsage is cairn's exit status for a command line it cannot run: a
// missing required flag, an unknown flag or command, a bad flag value or
// a missing argument. (1 is a run that failed; see README, Exit status.)
const exitUsage = 2

// usageError is a command line cairn cannot run. It prints as one line
// that names the command, what is wrong and where the command's flags are
// listed, e.g. `restore vm: missing --vcenter (see cairn restore vm
// --help)`; urfave/cli printed the command's whole help in front of its
// own error instead.
type usageError struct {
	Command string // the command's words without "cairn": "restore vm"; "" for cairn itself
	Problem string // "missing --vcenter", "unknown flag --bogus", ...
	Unknown string // the name of an unknown flag, without dashes
}

func (e *usageError) Error() string {
	if e.Command != "" {
		return fmt.Sprintf("%s: %s (see cairn %s --help)", e.Command, e.Problem, e.Command)
	}
	return e.Problem + " (see cairn --help)"
}

// ExitCode makes main exit with exitUsage.
func (e *usageError) ExitCode() int { return exitUsage }

// isUnknownFlag says whether err is a usage error for the unknown flag
// --name.
func isUnknownFlag(err error, name string) bool {
	var ue *usageError
	return errors.As(err, &ue) && ue.Unknown == name
}

// oneLineUsageErrors makes every command of app (and app itself) fail a
// command line it cannot run with a usageError instead of urfave/cli's
// help text: flag parse errors go through OnUsageError, required flags
// are checked in Before (urfave/cli checks them itself only to print the
// whole help first, so their Required mark is taken off), and a word that
// names no subcommand is refused rather than answered with "No help topic".
func oneLineUsageErrors(app *cli.App) {
	app.OnUsageError = func(c *cli.Context, err error, _ bool) error {
		return flagUsageError("", app.Flags, err)
	}
	if app.Action == nil {
		app.Action = func(c *cli.Context) error {
			if c.Args().First() == "help" { // cairn help [COMMAND...]: the command's --help
				if rest := c.Args().Tail(); len(rest) > 0 {
					return c.App.RunContext(c.Context, append(append([]string{c.App.Name}, rest...), "--help"))
				}
				return cli.ShowAppHelp(c)
			}
			if c.Args().Present() {
				return &usageError{Problem: fmt.Sprintf("unknown command %q", c.Args().First())}
			}
			return cli.ShowAppHelp(c)
		}
	}
	oneLineCommandErrors(app.Commands, "")
}

func oneLineCommandErrors(cmds []*cli.Command, parent string) {
	for _, cmd := range cmds {
		path := strings.TrimSpace(parent + " " + cmd.Name)
		oneLineCommandErrors(cmd.Subcommands, path)
		flags := cmd.Flags
		cmd.OnUsageError = func(c *cli.Context, err error, _ bool) error {
			return flagUsageError(path, flags, err)
		}
		required := takeRequired(flags)
		if len(required) > 0 {
			before := cmd.Before
			cmd.Before = func(c *cli.Context) error {
				var missing []string
				for _, names := range required {
					set := false
					for _, n := range names {
						set = set || c.IsSet(n)
					}
					if !set {
						missing = append(missing, "--"+names[0])
					}
				}
				if len(missing) > 0 {
					return &usageError{Command: path, Problem: "missing " + strings.Join(missing, " and ")}
				}
				if before != nil {
					return before(c)
				}
				return nil
			}
		}
		if len(cmd.Subcommands) > 0 && cmd.Action == nil {
			cmd.Action = func(c *cli.Context) error {
				if c.Args().Present() {
					return &usageError{Command: path, Problem: fmt.Sprintf("unknown command %q", c.Args().First())}
				}
				return cli.ShowSubcommandHelp(c)
			}
		}
	}
}

// takeRequired takes the Required mark off flags and returns the names of
// those that had it. (Every urfave/cli flag type keeps it in a bool field
// named Required.)
func takeRequired(flags []cli.Flag) [][]string {
	var out [][]string
	for _, f := range flags {
		rf, ok := f.(cli.RequiredFlag)
		if !ok || !rf.IsRequired() {
			continue
		}
		v := reflect.ValueOf(f)
		if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
			continue
		}
		field := v.Elem().FieldByName("Required")
		if !field.IsValid() || field.Kind() != reflect.Bool || !field.CanSet() {
			continue // left to urfave/cli
		}
		field.SetBool(false)
		out = append(out, f.Names())
	}
	return out
}

// flagUsageError turns the flag package's parse errors into a usageError
// of the command path, naming the flag with two dashes as cairn's help and
// docs write it.
func flagUsageError(path string, flags []cli.Flag, err error) error {
	msg := err.Error()
	ue := &usageError{Command: path, Problem: msg}
	var name, val string
	switch {
	case scan(msg, "flag provided but not defined: -", &name):
		ue.Problem, ue.Unknown = "unknown flag --"+name, name
	case scan(msg, "flag needs an argument: -", &name):
		ue.Problem = "--" + name + " needs a value"
	case strings.HasPrefix(msg, "invalid boolean value "):
		if _, e := fmt.Sscanf(msg, "invalid boolean value %q for -%s", &val, &name); e == nil {
			name = strings.TrimSuffix(name, ":")
			ue.Problem = fmt.Sprintf("--%s=%s: give --%s alone, or =true or =false", name, val, name)
		}
	case strings.HasPrefix(msg, "invalid value "):
		if _, e := fmt.Sscanf(msg, "invalid value %q for flag -%s", &val, &name); e == nil {
			name = strings.TrimSuffix(name, ":")
			why := msg[strings.Index(msg, "-"+name+":")+len(name)+2:]
			ue.Problem = fmt.Sprintf("--%s %q: %s", name, val, valueAdvice(flags, name, strings.TrimSpace(why)))
		}
	}
	return ue
}

// scan reports whether msg starts with prefix and sets rest to what follows.
func scan(msg, prefix string, rest *string) bool {
	if !strings.HasPrefix(msg, prefix) {
		return false
	}
	*rest = strings.TrimPrefix(msg, prefix)
	return true
}

// valueAdvice says what a flag takes when its value did not parse; why is
// the parser's own reason, kept when it says more than "parse error".
func valueAdvice(flags []cli.Flag, name, why string) string {
	var f cli.Flag
	for _, fl := range flags {
		for _, n := range fl.Names() {
			if n == name {
				f = fl
			}
		}
	}
	switch f.(type) {
	case *cli.IntFlag, *cli.Int64Flag, *cli.UintFlag, *cli.Uint64Flag, *cli.IntSliceFlag, *cli.Int64SliceFlag:
		if why == "value out of range" {
			return "out of range: give a smaller whole number"
		}
		return "give a whole number"
	case *cli.Float64Flag, *cli.Float64SliceFlag:
		return "give a number"
	case *cli.DurationFlag:
		return "give a duration like 90s, 15m or 2h"
	}
	return why
}

// commandPath is the words of c's command without "cairn": "restore vm".
func commandPath(c *cli.Context) string {
	return strings.TrimSpace(strings.TrimPrefix(c.Command.HelpName, c.App.Name))
}
