package serve

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cairnbackup/cairn/backupd/boot"
)

// bootCheckApps parses a boot_check's checks: [SPEC, ...] and
// check_timeout: 3m.
func (p *parser) bootCheckApps(m map[string]*yaml.Node, what string, bc *BootCheck) error {
	bc.CheckTimeout = boot.DefaultCheckTimeout
	if v := m["checks"]; v != nil {
		if v.Kind != yaml.SequenceNode {
			return p.errf(v, "%s: checks: want a list like [tcp:5432, \"http://:80/health=200\", \"script:/usr/local/bin/check-app --fast\"]", what)
		}
		for _, e := range v.Content {
			if e.Kind != yaml.ScalarNode || e.Value == "" {
				return p.errf(e, "%s: checks: each check is a string: %s", what, boot.CheckSyntax)
			}
			c, err := boot.ParseCheck(e.Value)
			if err != nil {
				return p.errf(e, "%s: checks: %v", what, err)
			}
			bc.Checks = append(bc.Checks, e.Value)
			bc.checks = append(bc.checks, c)
		}
	}
	if v := m["check_timeout"]; v != nil {
		d, err := time.ParseDuration(v.Value)
		if err != nil || d <= 0 || v.Kind != yaml.ScalarNode {
			return p.errf(v, "%s: check_timeout %q: want a duration like 3m", what, v.Value)
		}
		bc.CheckTimeout = d
	}
	return nil
}

// bootFailedSummary is the title of a boot_check_failed: which check
// failed, when the guest booted and a check did not pass.
func bootFailedSummary(res boot.Result, vm, pointID, job string) string {
	for _, c := range res.Checks {
		if !c.Passed {
			return fmt.Sprintf("point %s of %s booted but failed its check %s (job %s)", pointID, vm, c.Spec, job)
		}
	}
	return fmt.Sprintf("point %s of %s did not boot (job %s)", pointID, vm, job)
}
