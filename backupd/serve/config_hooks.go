package serve

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cairnbackup/cairn/backupd"
)

// JobHooks are a job's hooks: commands run on the appliance before and
// after the job run (pre_job, post_job), and around each VM's snapshot and
// backup (backupd.VMHooks).
type JobHooks struct {
	PreJob, PostJob                       []backupd.Hook
	PreSnapshot, PostSnapshot, PostBackup []backupd.Hook
}

// Empty reports whether there is no hook.
func (h *JobHooks) Empty() bool {
	return h == nil || len(h.PreJob)+len(h.PostJob)+len(h.PreSnapshot)+len(h.PostSnapshot)+len(h.PostBackup) == 0
}

// VMHooks are the per-VM hooks of job name.
func (h *JobHooks) VMHooks(job string) *backupd.VMHooks {
	if h.Empty() {
		return nil
	}
	return &backupd.VMHooks{Job: job, PreSnapshot: h.PreSnapshot, PostSnapshot: h.PostSnapshot, PostBackup: h.PostBackup}
}

// hooks reads a job's hooks: section: for each hook point a list of
// {command: [PROGRAM, ARG...], timeout: DURATION, on_failure: fail|skip|warn}
// (on_failure only for the pre hooks). The program must be an absolute
// path to an executable file.
func (p *parser) hooks(n *yaml.Node, what string) (*JobHooks, error) {
	m, err := p.fields(n, what+": hooks", backupd.HookPreJob, backupd.HookPostJob, backupd.HookPreSnapshot, backupd.HookPostSnapshot, backupd.HookPostBackup)
	if err != nil {
		return nil, err
	}
	h := &JobHooks{}
	for point, dst := range map[string]*[]backupd.Hook{
		backupd.HookPreJob: &h.PreJob, backupd.HookPostJob: &h.PostJob, backupd.HookPreSnapshot: &h.PreSnapshot,
		backupd.HookPostSnapshot: &h.PostSnapshot, backupd.HookPostBackup: &h.PostBackup,
	} {
		v := m[point]
		if v == nil {
			continue
		}
		items := v.Content
		if v.Kind == yaml.MappingNode { // one hook without the list
			items = []*yaml.Node{v}
		} else if v.Kind != yaml.SequenceNode {
			return nil, p.errf(v, "%s: hooks: %s: want a list of {command: [PROGRAM, ARG...], timeout: 5m, on_failure: fail}", what, point)
		}
		for _, it := range items {
			hk, err := p.hook(it, fmt.Sprintf("%s: hooks: %s", what, point), point)
			if err != nil {
				return nil, err
			}
			*dst = append(*dst, hk)
		}
	}
	return h, nil
}

func (p *parser) hook(n *yaml.Node, what, point string) (backupd.Hook, error) {
	h := backupd.Hook{Point: point, Timeout: backupd.DefaultHookTimeout, OnFailure: backupd.HookFail}
	keys := []string{"command", "timeout"}
	pre := point == backupd.HookPreJob || point == backupd.HookPreSnapshot
	if pre {
		keys = append(keys, "on_failure")
	}
	m, err := p.fields(n, what, keys...)
	if err != nil {
		return h, err
	}
	c := m["command"]
	if c == nil {
		return h, p.errf(n, "%s: missing \"command\" (a list: [PROGRAM, ARG...])", what)
	}
	if c.Kind == yaml.ScalarNode {
		return h, p.errf(c, "%s: command: want a list [PROGRAM, ARG...] (no shell runs it; for one write [/bin/sh, -c, %q])", what, c.Value)
	}
	if h.Argv, err = p.strs(c, what+": command"); err != nil {
		return h, err
	}
	if err := backupd.CheckHookProgram(h.Argv); err != nil {
		return h, p.errf(c, "%s: %v", what, err)
	}
	if v := m["timeout"]; v != nil {
		if h.Timeout, err = time.ParseDuration(v.Value); err != nil || h.Timeout <= 0 || v.Kind != yaml.ScalarNode {
			return h, p.errf(v, "%s: timeout %q: want a duration like 30s or 5m", what, v.Value)
		}
	}
	if v := m["on_failure"]; v != nil {
		if h.OnFailure, err = backupd.ParseHookPolicy(v.Value); err != nil || v.Kind != yaml.ScalarNode {
			return h, p.errf(v, "%s: on_failure %q: want fail, skip or warn", what, v.Value)
		}
	}
	return h, nil
}
