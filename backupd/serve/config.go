package serve

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/anomaly"
	"github.com/cairnbackup/cairn/backupd/schedule"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
)

// DefaultListen is the HTTP address when the config names none.
const DefaultListen = "127.0.0.1:8480"

// Defaults of a job's retries and of the server's parallelism.
const (
	DefaultRetries       = 2
	DefaultRetryDelay    = 5 * time.Minute
	DefaultParallelVMs   = 4
	DefaultParallelHosts = 2
)

// Config is a validated cairn.yaml (schema in docs/serve.md).
type Config struct {
	File       string // the file it was read from ("" when parsed from memory)
	Repository string
	Mount      string
	Listen     string
	// API is the HTTP API's transport and names (api: in the config).
	API APIConfig
	// Location is the time zone of cron schedules (timezone:, default local).
	Location *time.Location
	// Parallelism caps the VM backups running at once across all jobs.
	Parallelism Parallelism
	// Verify is the repository verify schedule (nil: never).
	Verify   schedule.Schedule
	VCenters []VCenter
	Jobs     []Job
	// Notify is where failures are told (nil: nowhere; notify_config.go).
	Notify *NotifyConfig
	// Instant is the instant: section (config_instant.go).
	Instant InstantConfig
}

// Parallelism caps concurrent VM backups: in total and per ESXi host
// (VMware advises spreading snapshot and NBD load across hosts).
type Parallelism struct {
	VMs     int // default DefaultParallelVMs
	PerHost int // default DefaultParallelHosts
}

// APIConfig is the api: section: the host names the API answers besides
// IP addresses and localhost (against DNS rebinding), and its TLS
// certificate and key, required when it listens beyond loopback.
type APIConfig struct {
	Hosts   []string
	TLSCert string
	TLSKey  string
}

// TLS reports whether the API serves HTTPS.
func (a APIConfig) TLS() bool { return a.TLSCert != "" }

// CheckListen refuses a listen address beyond loopback without TLS: the
// API token would cross the network in clear text.
func (c *Config) CheckListen() error {
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("listen %q: want HOST:PORT (like 127.0.0.1:8480): %v", c.Listen, err)
	}
	if c.API.TLS() {
		return nil
	}
	if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || host == "localhost" {
		return nil
	}
	return fmt.Errorf("listen %s reaches beyond this machine: give api: tls_cert and tls_key (the API token must not cross the network in clear text), or listen on 127.0.0.1", c.Listen)
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
	Name    string
	VCenter string // name of an entry of Config.VCenters
	// VMs (names, globs, inventory paths, MoRefs), Folders and Tags select
	// the job's VMs (any of them); Exclude removes VMs by name glob.
	VMs, Folders, Tags, Exclude []string
	Schedule                    schedule.Schedule
	Retention                   blockmap.Policy
	Transports                  []string
	NBDCommand                  string
	Quiesce                     string
	Parallel                    int           // VMs of this job backed up at once (default: the server's cap)
	Retries                     int           // further attempts of a failed VM backup (default DefaultRetries)
	RetryDelay                  time.Duration // wait before each retry (default DefaultRetryDelay)
	// VerifySourceEvery: every Nth successful backup of a VM is followed
	// by a verify against the source (0: never).
	VerifySourceEvery int
	// Repair: a verify against the source that finds changes CBT missed
	// commits a corrected point (default true).
	Repair bool
	// BootCheck, when set, boots every new point and records a verdict.
	BootCheck *BootCheck
	// Replicate copies the job's points offsite (nil: not replicated).
	Replicate *Replicate
	// RPO is the rpo: key: 0 derives it from the schedule, RPOOff turns
	// the check off (EffectiveRPO).
	RPO time.Duration
	// ExcludeDisks are the exclude_disks: patterns, disks not backed up
	// (DISK or VM/DISK; backupd.ParseDiskExclusions).
	ExcludeDisks []backupd.DiskExclusion
	// Hooks are the administrator's commands around the job and each
	// VM's snapshot and backup (nil: none; config_hooks.go).
	Hooks *JobHooks
	// Anomaly are the thresholds of the suspicious-change verdict of the
	// job's points (the anomaly: block; zero: the defaults).
	Anomaly anomaly.Thresholds
}

// Selection is the job's VM selection for vsphere.SelectVMs.
func (j *Job) Selection() vsphere.Selection {
	return vsphere.Selection{Names: j.VMs, Folders: j.Folders, Tags: j.Tags, Exclude: j.Exclude}
}

// SelectsByName reports whether the job's name patterns select vm (the
// check that needs no vCenter; folders and tags need SelectVMs).
func (j *Job) SelectsByName(vm string) bool {
	for _, p := range j.Exclude {
		if ok, _ := path.Match(p, vm); ok {
			return false
		}
	}
	for _, p := range j.VMs {
		if ok, _ := path.Match(p, vm); ok || p == vm {
			return true
		}
	}
	return false
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
	cfg, err := ParseConfig(file, data)
	if err != nil {
		return nil, err
	}
	if abs, err := filepath.Abs(file); err == nil {
		cfg.File = abs
	}
	return cfg, nil
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
	m, err := p.fields(root, "config", "repository", "mount", "listen", "api", "timezone", "parallelism", "verify", "vcenters", "jobs", "notify", "instant")
	if err != nil {
		return nil, err
	}
	cfg := &Config{Location: time.Local, Parallelism: Parallelism{VMs: DefaultParallelVMs, PerHost: DefaultParallelHosts}, Instant: defaultInstant()}
	tz, err := p.str(m, "timezone", "config", false, root)
	if err != nil {
		return nil, err
	}
	if tz != "" {
		if cfg.Location, err = time.LoadLocation(tz); err != nil {
			return nil, p.errf(m["timezone"], "config: timezone %q: unknown time zone (like UTC or Europe/Berlin)", tz)
		}
	}
	if n := m["parallelism"]; n != nil {
		if cfg.Parallelism, err = p.parallelism(n); err != nil {
			return nil, err
		}
	}
	if n := m["verify"]; n != nil {
		vm, err := p.fields(n, "verify", "schedule")
		if err != nil {
			return nil, err
		}
		spec, err := p.str(vm, "schedule", "verify", true, n)
		if err != nil {
			return nil, err
		}
		if cfg.Verify, err = schedule.Parse(spec, cfg.Location); err != nil {
			return nil, p.errf(vm["schedule"], "verify: %v", err)
		}
	}
	if cfg.Repository, err = p.str(m, "repository", "config", true, root); err != nil {
		return nil, err
	}
	if cfg.Mount, err = p.str(m, "mount", "config", false, root); err != nil {
		return nil, err
	}
	if cfg.Mount != "" {
		rep, _ := filepath.Abs(cfg.Repository)
		mnt, _ := filepath.Abs(cfg.Mount)
		if rel, err := filepath.Rel(rep, mnt); err == nil && (rel == "." || !strings.HasPrefix(rel, "..")) {
			return nil, p.errf(m["mount"], "config: mount %s is inside the repository %s: choose a mount point outside it", cfg.Mount, cfg.Repository)
		}
	}
	if cfg.Listen, err = p.str(m, "listen", "config", false, root); err != nil {
		return nil, err
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if n := m["api"]; n != nil {
		if cfg.API, err = p.api(n); err != nil {
			return nil, err
		}
	}
	if err := cfg.CheckListen(); err != nil {
		return nil, p.errf(orNode(m["listen"], root), "config: %v", err)
	}
	// vcenters and jobs are optional: a repository filled by cairn import
	// is served (mount, API, verify) and replicated without a vCenter.
	vcs, err := p.list(m, "vcenters")
	if err != nil {
		return nil, err
	}
	for _, n := range vcs {
		vc, err := p.vcenter(n)
		if err != nil {
			return nil, err
		}
		if cfg.VCenterByName(vc.Name) != nil {
			return nil, p.errf(n, "vcenter %q defined twice", vc.Name)
		}
		cfg.VCenters = append(cfg.VCenters, vc)
	}
	jobs, err := p.list(m, "jobs")
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, n := range jobs {
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
	if n := m["instant"]; n != nil {
		if cfg.Instant, err = p.instant(n); err != nil {
			return nil, err
		}
	}
	if n := m["notify"]; n != nil {
		if cfg.Notify, err = p.notifyConfig(n, cfg); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

func orNode(n, fallback *yaml.Node) *yaml.Node {
	if n != nil {
		return n
	}
	return fallback
}

func (p *parser) api(n *yaml.Node) (APIConfig, error) {
	var a APIConfig
	m, err := p.fields(n, "api", "hosts", "tls_cert", "tls_key")
	if err != nil {
		return a, err
	}
	if h := m["hosts"]; h != nil {
		if a.Hosts, err = p.strs(h, "api: hosts"); err != nil {
			return a, err
		}
	}
	if a.TLSCert, err = p.str(m, "tls_cert", "api", false, n); err != nil {
		return a, err
	}
	if a.TLSKey, err = p.str(m, "tls_key", "api", false, n); err != nil {
		return a, err
	}
	if (a.TLSCert == "") != (a.TLSKey == "") {
		return a, p.errf(n, "api: give both tls_cert and tls_key, or neither")
	}
	return a, nil
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
	j := Job{Retries: DefaultRetries, RetryDelay: DefaultRetryDelay, Repair: true}
	m, err := p.fields(n, "job", "name", "vcenter", "vms", "folders", "tags", "exclude", "schedule", "retention",
		"transports", "nbd_command", "quiesce", "parallel", "retries", "retry_delay", "verify_against_source_every", "repair", "boot_check", "replicate", "rpo", "exclude_disks", "hooks", "anomaly")
	if err != nil {
		return j, err
	}
	if j.Name, err = p.str(m, "name", "job", true, n); err != nil {
		return j, err
	}
	what := fmt.Sprintf("job %q", j.Name)
	if err := p.jobRPO(m, what, &j); err != nil {
		return j, err
	}
	if m["vcenter"] == nil {
		return p.importedJob(n, m, j, what, cfg)
	}
	if j.VCenter, err = p.str(m, "vcenter", what, true, n); err != nil {
		return j, err
	}
	if cfg.VCenterByName(j.VCenter) == nil {
		return j, p.unknownVCenter(m["vcenter"], what, j.VCenter, cfg)
	}
	for key, dst := range map[string]*[]string{"vms": &j.VMs, "folders": &j.Folders, "tags": &j.Tags, "exclude": &j.Exclude} {
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
		if key == "vms" || key == "exclude" {
			for _, g := range *dst {
				if _, err := path.Match(g, ""); err != nil {
					return j, p.errf(v, "%s: %s: bad pattern %q", what, key, g)
				}
			}
		}
	}
	if len(j.VMs)+len(j.Folders)+len(j.Tags) == 0 {
		return j, p.errf(n, "%s: select VMs with \"vms\" (names or globs), \"folders\" or \"tags\"", what)
	}
	sched, err := p.str(m, "schedule", what, true, n)
	if err != nil {
		return j, err
	}
	if j.Schedule, err = schedule.Parse(sched, cfg.Location); err != nil {
		return j, p.errf(m["schedule"], "%s: %v", what, err)
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
	if err := p.excludeDisks(m, what, &j); err != nil {
		return j, err
	}
	q, err := p.str(m, "quiesce", what, false, n)
	if err != nil {
		return j, err
	}
	if j.Quiesce, err = vsphere.ParseQuiesce(q); err != nil {
		return j, p.errf(m["quiesce"], "%s: %v", what, err)
	}
	for key, dst := range map[string]*int{"parallel": &j.Parallel, "retries": &j.Retries, "verify_against_source_every": &j.VerifySourceEvery} {
		v := m[key]
		if v == nil {
			continue
		}
		min := 0
		if key == "parallel" {
			min = 1
		}
		if err := v.Decode(dst); err != nil || *dst < min {
			return j, p.errf(v, "%s: %s: want a number >= %d", what, key, min)
		}
	}
	if v := m["retry_delay"]; v != nil {
		if j.RetryDelay, err = time.ParseDuration(v.Value); err != nil || j.RetryDelay < 0 || v.Kind != yaml.ScalarNode {
			return j, p.errf(v, "%s: retry_delay %q: want a duration like 30s or 5m", what, v.Value)
		}
	}
	if v := m["repair"]; v != nil {
		if err := v.Decode(&j.Repair); err != nil {
			return j, p.errf(v, "%s: repair: want true or false", what)
		}
	}
	if v := m["anomaly"]; v != nil {
		if j.Anomaly, err = p.anomaly(v, what); err != nil {
			return j, err
		}
	}
	if v := m["boot_check"]; v != nil {
		if j.BootCheck, err = p.bootCheck(v, what, cfg); err != nil {
			return j, err
		}
	}
	if v := m["replicate"]; v != nil {
		if j.Replicate, err = p.replicate(v, what, cfg); err != nil {
			return j, err
		}
	}
	if v := m["hooks"]; v != nil {
		if j.Hooks, err = p.hooks(v, what); err != nil {
			return j, err
		}
	}
	return j, nil
}

func (p *parser) parallelism(n *yaml.Node) (Parallelism, error) {
	par := Parallelism{VMs: DefaultParallelVMs, PerHost: DefaultParallelHosts}
	m, err := p.fields(n, "parallelism", "vms", "per_host")
	if err != nil {
		return par, err
	}
	for key, dst := range map[string]*int{"vms": &par.VMs, "per_host": &par.PerHost} {
		if v := m[key]; v != nil {
			if err := v.Decode(dst); err != nil || *dst < 1 {
				return par, p.errf(v, "parallelism: %s: want a number >= 1", key)
			}
		}
	}
	return par, nil
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
