package serve

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
)

// DefaultListen is the HTTP address when the config names none.
const DefaultListen = "127.0.0.1:8480"

// Config is a validated cairn.yaml (schema in docs/lab.md and docs/serve.md).
type Config struct {
	Repository string
	Mount      string
	Listen     string
	VCenters   []VCenter
	Jobs       []Job
}

// VCenter is one vCenter the jobs connect to.
type VCenter struct {
	Name        string
	URL         string
	Credentials string // file: user and password on two lines
	Thumbprint  string
	Insecure    bool
}

// Job is one scheduled backup job.
type Job struct {
	Name       string
	VCenter    string   // name of an entry of Config.VCenters
	VMs        []string // names or path.Match globs
	Interval   time.Duration
	Retention  blockmap.Policy
	Transports []string
	NBDCommand string
	Quiesce    string
	Parallel   int // VMs of this job backed up at once (default 1)
}

// VCenterByName returns the vCenter called name, or nil.
func (c *Config) VCenterByName(name string) *VCenter {
	for i := range c.VCenters {
		if c.VCenters[i].Name == name {
			return &c.VCenters[i]
		}
	}
	return nil
}

// ConfigError is an invalid configuration: file, line and reason.
type ConfigError struct {
	File   string
	Line   int
	Reason string
}

func (e *ConfigError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Reason)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Reason)
}

// LoadConfig reads and validates a cairn.yaml. An invalid file gives a
// *ConfigError with the line and the reason.
func LoadConfig(file string) (*Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return ParseConfig(file, data)
}

// ParseConfig validates the YAML data; name is used in errors.
func ParseConfig(name string, data []byte) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line := 0
		msg := err.Error()
		// yaml.v3 errors read "yaml: line N: reason".
		if rest, ok := strings.CutPrefix(msg, "yaml: line "); ok {
			if n, r, ok := strings.Cut(rest, ":"); ok {
				if l, err := strconv.Atoi(n); err == nil {
					line, msg = l, strings.TrimSpace(r)
				}
			}
		}
		return nil, &ConfigError{File: name, Line: line, Reason: msg}
	}
	p := &parser{file: name}
	if len(doc.Content) == 0 {
		return nil, &ConfigError{File: name, Reason: "empty configuration"}
	}
	cfg, err := p.config(doc.Content[0])
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

type parser struct{ file string }

func (p *parser) errf(n *yaml.Node, format string, args ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return &ConfigError{File: p.file, Line: line, Reason: fmt.Sprintf(format, args...)}
}

// fields checks that n is a mapping with only the allowed keys and
// returns its values by key.
func (p *parser) fields(n *yaml.Node, what string, allowed ...string) (map[string]*yaml.Node, error) {
	if n.Kind != yaml.MappingNode {
		return nil, p.errf(n, "%s: want a mapping", what)
	}
	out := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		ok := false
		for _, a := range allowed {
			ok = ok || a == k.Value
		}
		if !ok {
			return nil, p.errf(k, "%s: unknown key %q (known: %s)", what, k.Value, strings.Join(allowed, ", "))
		}
		if out[k.Value] != nil {
			return nil, p.errf(k, "%s: key %q given twice", what, k.Value)
		}
		out[k.Value] = v
	}
	return out, nil
}

func (p *parser) str(m map[string]*yaml.Node, key, what string, required bool, parent *yaml.Node) (string, error) {
	n := m[key]
	if n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
		if required {
			return "", p.errf(parent, "%s: missing %q", what, key)
		}
		return "", nil
	}
	if n.Kind != yaml.ScalarNode {
		return "", p.errf(n, "%s: %s: want a string", what, key)
	}
	if required && strings.TrimSpace(n.Value) == "" {
		return "", p.errf(n, "%s: %s is empty", what, key)
	}
	return n.Value, nil
}

func (p *parser) strs(n *yaml.Node, what string) ([]string, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, p.errf(n, "%s: want a list", what)
	}
	var out []string
	for _, e := range n.Content {
		if e.Kind != yaml.ScalarNode || e.Value == "" {
			return nil, p.errf(e, "%s: want a non-empty string", what)
		}
		out = append(out, e.Value)
	}
	return out, nil
}

func (p *parser) config(root *yaml.Node) (*Config, error) {
	m, err := p.fields(root, "config", "repository", "mount", "listen", "vcenters", "jobs")
	if err != nil {
		return nil, err
	}
	cfg := &Config{}
	if cfg.Repository, err = p.str(m, "repository", "config", true, root); err != nil {
		return nil, err
	}
	if cfg.Mount, err = p.str(m, "mount", "config", false, root); err != nil {
		return nil, err
	}
	if cfg.Listen, err = p.str(m, "listen", "config", false, root); err != nil {
		return nil, err
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	vcs := m["vcenters"]
	if vcs == nil || vcs.Kind != yaml.SequenceNode || len(vcs.Content) == 0 {
		return nil, p.errf(orNode(vcs, root), "config: want a non-empty list \"vcenters\"")
	}
	for _, n := range vcs.Content {
		vc, err := p.vcenter(n)
		if err != nil {
			return nil, err
		}
		if cfg.VCenterByName(vc.Name) != nil {
			return nil, p.errf(n, "vcenter %q defined twice", vc.Name)
		}
		cfg.VCenters = append(cfg.VCenters, vc)
	}
	jobs := m["jobs"]
	if jobs == nil || jobs.Kind != yaml.SequenceNode || len(jobs.Content) == 0 {
		return nil, p.errf(orNode(jobs, root), "config: want a non-empty list \"jobs\"")
	}
	names := map[string]bool{}
	for _, n := range jobs.Content {
		j, err := p.job(n, cfg)
		if err != nil {
			return nil, err
		}
		if names[j.Name] {
			return nil, p.errf(n, "job %q defined twice", j.Name)
		}
		names[j.Name] = true
		cfg.Jobs = append(cfg.Jobs, j)
	}
	return cfg, nil
}

func orNode(n, fallback *yaml.Node) *yaml.Node {
	if n != nil {
		return n
	}
	return fallback
}

func (p *parser) vcenter(n *yaml.Node) (VCenter, error) {
	var vc VCenter
	m, err := p.fields(n, "vcenter", "name", "url", "credentials", "thumbprint", "insecure")
	if err != nil {
		return vc, err
	}
	if vc.Name, err = p.str(m, "name", "vcenter", true, n); err != nil {
		return vc, err
	}
	what := fmt.Sprintf("vcenter %q", vc.Name)
	if vc.URL, err = p.str(m, "url", what, true, n); err != nil {
		return vc, err
	}
	if _, err := vsphere.ParseURL(vc.URL); err != nil {
		return vc, p.errf(m["url"], "%s: url: %v", what, err)
	}
	if vc.Credentials, err = p.str(m, "credentials", what, true, n); err != nil {
		return vc, err
	}
	if vc.Thumbprint, err = p.str(m, "thumbprint", what, false, n); err != nil {
		return vc, err
	}
	if vc.Thumbprint != "" {
		if _, err := vsphere.NormalizeThumbprint(vc.Thumbprint); err != nil {
			return vc, p.errf(m["thumbprint"], "%s: %v", what, err)
		}
	}
	if in := m["insecure"]; in != nil {
		if err := in.Decode(&vc.Insecure); err != nil {
			return vc, p.errf(in, "%s: insecure: want true or false", what)
		}
	}
	return vc, nil
}

func (p *parser) job(n *yaml.Node, cfg *Config) (Job, error) {
	j := Job{Parallel: 1}
	m, err := p.fields(n, "job", "name", "vcenter", "vms", "schedule", "retention", "transports", "nbd_command", "quiesce", "parallel")
	if err != nil {
		return j, err
	}
	if j.Name, err = p.str(m, "name", "job", true, n); err != nil {
		return j, err
	}
	what := fmt.Sprintf("job %q", j.Name)
	if j.VCenter, err = p.str(m, "vcenter", what, true, n); err != nil {
		return j, err
	}
	if cfg.VCenterByName(j.VCenter) == nil {
		return j, p.errf(m["vcenter"], "%s: unknown vcenter %q", what, j.VCenter)
	}
	if m["vms"] == nil {
		return j, p.errf(n, "%s: missing \"vms\"", what)
	}
	if j.VMs, err = p.strs(m["vms"], what+": vms"); err != nil {
		return j, err
	}
	if len(j.VMs) == 0 {
		return j, p.errf(m["vms"], "%s: vms is empty", what)
	}
	for _, g := range j.VMs {
		if _, err := path.Match(g, ""); err != nil {
			return j, p.errf(m["vms"], "%s: vms: bad pattern %q", what, g)
		}
	}
	sched, err := p.str(m, "schedule", what, true, n)
	if err != nil {
		return j, err
	}
	if strings.Count(strings.TrimSpace(sched), " ") >= 4 {
		return j, p.errf(m["schedule"], "%s: schedule %q: cron expressions are not supported yet; give an interval like 30s or 1h", what, sched)
	}
	if j.Interval, err = time.ParseDuration(sched); err != nil {
		return j, p.errf(m["schedule"], "%s: schedule %q: not a duration (like 30s, 15m, 1h)", what, sched)
	}
	if j.Interval < time.Second {
		return j, p.errf(m["schedule"], "%s: schedule %s: shorter than 1s", what, sched)
	}
	if r := m["retention"]; r != nil {
		if j.Retention, err = p.retention(r, what); err != nil {
			return j, err
		}
	}
	if t := m["transports"]; t != nil {
		list, err := p.strs(t, what+": transports")
		if err != nil {
			return j, err
		}
		if j.Transports, err = backupd.ParseTransports(strings.Join(list, ",")); err != nil {
			return j, p.errf(t, "%s: %v", what, err)
		}
	}
	if j.NBDCommand, err = p.str(m, "nbd_command", what, false, n); err != nil {
		return j, err
	}
	q, err := p.str(m, "quiesce", what, false, n)
	if err != nil {
		return j, err
	}
	if j.Quiesce, err = vsphere.ParseQuiesce(q); err != nil {
		return j, p.errf(m["quiesce"], "%s: %v", what, err)
	}
	if pn := m["parallel"]; pn != nil {
		if err := pn.Decode(&j.Parallel); err != nil || j.Parallel < 1 {
			return j, p.errf(pn, "%s: parallel: want a number >= 1", what)
		}
	}
	return j, nil
}

func (p *parser) retention(n *yaml.Node, what string) (blockmap.Policy, error) {
	var pol blockmap.Policy
	m, err := p.fields(n, what+": retention", "keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly")
	if err != nil {
		return pol, err
	}
	for key, dst := range map[string]*int{
		"keep_last": &pol.KeepLast, "keep_hourly": &pol.KeepHourly, "keep_daily": &pol.KeepDaily,
		"keep_weekly": &pol.KeepWeekly, "keep_monthly": &pol.KeepMonthly,
	} {
		v := m[key]
		if v == nil {
			continue
		}
		if err := v.Decode(dst); err != nil || *dst < 0 {
			return pol, p.errf(v, "%s: retention: %s: want a number >= 0", what, key)
		}
	}
	return pol, nil
}

// IsConfigError reports whether err is an invalid configuration.
func IsConfigError(err error) bool {
	var ce *ConfigError
	return errors.As(err, &ce)
}
