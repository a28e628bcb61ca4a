package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/backupd/boot"
)

// verifyBootChecks parses verify-boot's --check and --check-script
// (a script is the check "script:CMD").
func verifyBootChecks(c *cli.Context) ([]boot.Check, error) {
	specs := flagLists(c.Generic("check"))
	for _, s := range flagLists(c.Generic("check-script")) {
		specs = append(specs, "script:"+s)
	}
	if c.IsSet("check-timeout") && c.Duration("check-timeout") <= 0 {
		return nil, errors.New("--check-timeout: want a positive duration like 3m")
	}
	checks, err := boot.ParseChecks(specs)
	if err != nil {
		return nil, fmt.Errorf("--check: %w", err)
	}
	return checks, nil
}

// printChecks lists the application checks of a verdict.
func printChecks(checks []boot.CheckResult) {
	for _, r := range checks {
		state := "passed"
		if !r.Passed {
			state = "FAILED"
		}
		fmt.Printf("  check %s: %s after %.0f s: %s\n", r.Spec, state, r.Seconds, r.Detail)
		if !r.Passed && strings.TrimSpace(r.Output) != "" {
			out := strings.TrimSpace(r.Output)
			if i := strings.LastIndexByte(out, '\n'); i >= 0 {
				out = out[i+1:]
			}
			fmt.Printf("    last output: %s\n", out)
		}
	}
}
