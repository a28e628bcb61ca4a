package serve

import (
	"path"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/cairnbackup/cairn/backupd/anomaly"
)

// BacksUp reports whether the job backs VMs up from a vCenter. A job
// without vcenter: backs nothing up: it replicates and boot-checks the
// points the repository already holds of the VMs its vms: patterns name
// (imported VMs: cairn import; see docs/serve.md, "Without vCenter").
func (j *Job) BacksUp() bool { return j.VCenter != "" }

// vSphereJobKeys are the job keys that only a job backing up from a
// vCenter can use.
var vSphereJobKeys = []string{"schedule", "folders", "tags", "retention", "transports", "nbd_command", "quiesce",
	"parallel", "retries", "retry_delay", "verify_against_source_every", "repair", "exclude_disks", "hooks"}

// importedJob reads a job without vcenter: (m are its keys): vms (names
// or globs of VMs in the repository) and exclude, with replicate: and/or
// boot_check: on their own schedules. Keys that only mean something for
// backups from vSphere are refused, naming the fix.
func (p *parser) importedJob(n *yaml.Node, m map[string]*yaml.Node, j Job, what string, cfg *Config) (Job, error) {
	for _, key := range vSphereJobKeys {
		v := m[key]
		if v == nil {
			continue
		}
		where := "a vcenter of the \"vcenters\" list"
		if len(cfg.VCenters) == 0 {
			where = "a vcenter (this config has no \"vcenters\" list: add one)"
		}
		return j, p.errf(v, "%s: %s needs vcenter: NAME, %s; a job without vcenter backs nothing up and only replicates or boot-checks the repository's points of its vms (imported VMs: cairn import)", what, key, where)
	}
	var err error
	for key, dst := range map[string]*[]string{"vms": &j.VMs, "exclude": &j.Exclude} {
		v := m[key]
		if v == nil {
			continue
		}
		if *dst, err = p.strs(v, what+": "+key); err != nil {
			return j, err
		}
		if len(*dst) == 0 {
			return j, p.errf(v, "%s: %s is empty", what, key)
		}
		for _, g := range *dst {
			if _, err := path.Match(g, ""); err != nil {
				return j, p.errf(v, "%s: %s: bad pattern %q", what, key, g)
			}
		}
	}
	if len(j.VMs) == 0 {
		return j, p.errf(n, "%s: name the repository's VMs with \"vms\" (names or globs, like [\"kvm-*\"]); or give vcenter: NAME to back VMs up from vSphere", what)
	}
	if v := m["replicate"]; v != nil {
		if j.Replicate, err = p.replicate(v, what, cfg); err != nil {
			return j, err
		}
		if j.Replicate.AfterBackup || j.Replicate.Schedule == nil {
			return j, p.errf(orNode(valueOf(v, "after_backup"), v),
				"%s: replicate: after_backup needs backups, and a job without vcenter makes none: give schedule: (an interval like 6h or a cron expression)", what)
		}
	}
	if v := m["boot_check"]; v != nil {
		if j.BootCheck, err = p.bootCheck(v, what, cfg); err != nil {
			return j, err
		}
		if j.BootCheck.AfterBackup || j.BootCheck.Schedule == nil {
			return j, p.errf(orNode(valueOf(v, "after_backup"), v), "%s: boot_check: after_backup needs backups, and a job without vcenter makes none: give schedule: (an interval like 24h or a cron expression)", what)
		}
	}
	if v := m["anomaly"]; v != nil {
		// The thresholds cairn import --config judges the job's VMs'
		// new points with (ImportThresholds).
		if j.Anomaly, err = p.anomaly(v, what); err != nil {
			return j, err
		}
	}
	if j.Replicate == nil && j.BootCheck == nil && j.RPO <= 0 && m["anomaly"] == nil {
		return j, p.errf(n, "%s: without vcenter a job only replicates, boot-checks or watches the RPO of the repository's VMs, or gives cairn import its anomaly: thresholds: give replicate: or boot_check: with a schedule, or rpo:, or anomaly: (or vcenter: NAME to back up from vSphere)", what)
	}
	return j, nil
}

// valueOf is the value of key in mapping n, or nil.
func valueOf(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// unknownVCenter is the error of a job naming a vcenter the config does
// not define.
func (p *parser) unknownVCenter(n *yaml.Node, what, name string, cfg *Config) error {
	if len(cfg.VCenters) == 0 {
		return p.errf(n, "%s: unknown vcenter %q: the config has no \"vcenters\" list (add one with name: %s, url: and credentials:; or drop vcenter: for a job that only replicates or boot-checks imported VMs)", what, name, name)
	}
	var names []string
	for _, vc := range cfg.VCenters {
		names = append(names, vc.Name)
	}
	return p.errf(n, "%s: unknown vcenter %q (defined: %s)", what, name, strings.Join(names, ", "))
}

// list is the optional list under key of the top-level mapping m: nil
// when absent or empty (a key without a value), an error naming the key
// when it is not a list.
func (p *parser) list(m map[string]*yaml.Node, key string) ([]*yaml.Node, error) {
	n := m[key]
	if n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, p.errf(n, "config: %s: want a list (of mappings, as in docs/serve.md)", key)
	}
	return n.Content, nil
}

// ImportThresholds are the suspicious-change thresholds of vm's imported
// points (cairn import --config): the anomaly: block of the first job
// without vcenter whose vms: select vm (zero fields: the defaults), and
// that job's name; ok is false when no such job selects it.
func (c *Config) ImportThresholds(vm string) (t anomaly.Thresholds, job string, ok bool) {
	for i := range c.Jobs {
		j := &c.Jobs[i]
		if !j.BacksUp() && j.SelectsByName(vm) {
			return j.Anomaly, j.Name, true
		}
	}
	return t, "", false
}
