package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v2"
)

// labProgram is the program that runs the lab: separate from cairn, so
// that cairn does not carry govmomi's vCenter simulator (its package
// initialisers alone cost every cairn command about 10 ms).
const labProgram = "cairn-lab"

func labCommands() []*cli.Command {
	return []*cli.Command{{
		Name:  "lab",
		Usage: "run a simulated vCenter with VMs whose guests keep writing files, to try cairn on",
		Description: "Runs " + labProgram + " (installed next to cairn; make build builds both) with the\n" +
			"given flags: a simulated vCenter with VMs whose guests keep changing files, a\n" +
			"ready cairn.yaml and credentials. `cairn lab --help` lists its flags; see docs/lab.md.",
		ArgsUsage:       "[flags]",
		SkipFlagParsing: true,
		Action: func(c *cli.Context) error {
			path, err := findLabProgram()
			if err != nil {
				return err
			}
			args := []string{labProgram}
			if c.IsSet("log-level") {
				args = append(args, "--log-level", c.String("log-level"))
			}
			args = append(args, c.Args().Slice()...)
			if err := syscall.Exec(path, args, os.Environ()); err != nil {
				return fmt.Errorf("lab: run %s: %w", path, err)
			}
			return nil
		},
	}}
}

// findLabProgram looks for cairn-lab beside the running cairn, then on PATH.
func findLabProgram() (string, error) {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), labProgram)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath(labProgram)
	if err == nil {
		return p, nil
	}
	if errors.Is(err, exec.ErrNotFound) {
		return "", fmt.Errorf("lab: %s is not installed next to cairn or on PATH: build it with `make build` (or `go build ./cmd/%s`) and put it beside cairn", labProgram, labProgram)
	}
	return "", fmt.Errorf("lab: %w", err)
}
