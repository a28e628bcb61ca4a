package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// hoistGlobalFlags moves the global flags that take a value (--repo,
// --log-level) given after the command's name in front of it, where
// urfave/cli looks for them: `cairn restore vm ... --log-level debug` and
// `cairn points --repo DIR` then work instead of failing with "flag
// provided but not defined" and the whole help. A flag the command
// defines itself keeps its place, and so does everything after "--".
func hoistGlobalFlags(app *cli.App, args []string) []string {
	global := map[string]bool{}
	for _, f := range app.Flags {
		if _, isBool := f.(*cli.BoolFlag); !isBool {
			for _, n := range f.Names() {
				global[n] = true
			}
		}
	}
	i := 1
	for ; i < len(args); i++ { // the global flags before the command
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") {
			break
		}
		if name := strings.TrimLeft(a, "-"); !strings.Contains(name, "=") && global[name] {
			i++
		}
	}
	start := i
	var leaf *cli.Command
	for cmds := app.Commands; i < len(args); i++ { // the command and its subcommands
		c := findCommand(cmds, args[i])
		if c == nil {
			break
		}
		leaf, cmds = c, c.Subcommands
	}
	if leaf == nil || i > len(args) {
		return args
	}
	own := map[string]bool{}      // the command's own flags
	ownValue := map[string]bool{} // ... that take a value
	for _, f := range leaf.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			own[n], ownValue[n] = true, !isBool
		}
	}
	var hoisted, rest []string
	for j := i; j < len(args); j++ {
		a := args[j]
		if a == "--" {
			rest = append(rest, args[j:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			rest = append(rest, a)
			continue
		}
		name, _, inline := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch {
		case global[name] && !own[name] && (inline || j+1 < len(args)):
			hoisted = append(hoisted, a)
			if !inline {
				hoisted = append(hoisted, args[j+1])
				j++
			}
		case ownValue[name] && !inline && j+1 < len(args):
			rest = append(rest, a, args[j+1]) // its value is no flag of ours
			j++
		default:
			rest = append(rest, a)
		}
	}
	if len(hoisted) == 0 {
		return args
	}
	out := append([]string{}, args[:start]...)
	out = append(out, hoisted...)
	out = append(out, args[start:i]...)
	return append(out, rest...)
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}
