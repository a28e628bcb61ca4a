package main

import (
	"encoding/json"
	"errors"
	"io"
	"os"

	"github.com/urfave/cli/v2"
)

// A command run with --json always prints one JSON document on stdout,
// also when it fails: its result, or (when it failed before it had one)
// an error object, {"error": "...", "advice": "...", "exit_code": N}
// plus what the failed command did (restore vm: "removed", "left_vm",
// ...). The exit status stays non-zero and stderr keeps the error line.

// jsonFailureFields is an error that adds fields to the JSON error object
// (what a failed command did and left behind).
type jsonFailureFields interface {
	JSONFields() map[string]any
}

// jsonShown is an error of a command that has already printed its JSON
// document (verify's report with bad blocks, backup's results with failed
// VMs): no error object is added to it.
type jsonShown struct{ error }

func (e jsonShown) Unwrap() error { return e.error }

// ExitCode keeps the wrapped error's exit status.
func (e jsonShown) ExitCode() int {
	var ec cli.ExitCoder
	if errors.As(e.error, &ec) {
		return ec.ExitCode()
	}
	return 1
}

// afterJSON marks err as failing a command whose JSON document is printed
// when asJSON; it passes err on as it is otherwise.
func afterJSON(asJSON bool, err error) error {
	if !asJSON || err == nil {
		return err
	}
	return jsonShown{err}
}

// jsonErrorObject is the JSON document of a failed command.
func jsonErrorObject(err error) map[string]any {
	obj := map[string]any{}
	var ff jsonFailureFields
	if errors.As(err, &ff) {
		for k, v := range ff.JSONFields() {
			obj[k] = v
		}
	}
	obj["error"] = errorLine(err)
	if a := adviceFor(err); a != "" {
		obj["advice"] = a
	}
	code := 1
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		code = ec.ExitCode()
	}
	obj["exit_code"] = code
	return obj
}

// jsonFailures makes every command with a --json flag print a JSON error
// object on stdout when it fails (in its Before: a missing flag; or its
// Action) without having printed its document.
func jsonFailures(cmds []*cli.Command, out func() io.Writer) {
	for _, cmd := range cmds {
		jsonFailures(cmd.Subcommands, out)
		if !hasFlag(cmd.Flags, "json") {
			continue
		}
		wrap := func(f cli.ActionFunc) cli.ActionFunc {
			if f == nil {
				return nil
			}
			return func(c *cli.Context) error {
				err := f(c)
				var shown jsonShown
				if err == nil || !c.Bool("json") || errors.As(err, &shown) {
					return err
				}
				enc := json.NewEncoder(out())
				enc.SetIndent("", "  ")
				if e := enc.Encode(jsonErrorObject(err)); e != nil {
					return err
				}
				return jsonShown{err}
			}
		}
		before, action := cmd.Before, cmd.Action
		cmd.Before = cli.BeforeFunc(wrap(cli.ActionFunc(before)))
		cmd.Action = wrap(action)
	}
}

func hasFlag(flags []cli.Flag, name string) bool {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}

// stdout is where commands print their results.
func stdout() io.Writer { return os.Stdout }
