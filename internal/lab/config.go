package lab

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"
)

// ServeConfig is the cairn.yaml `cairn lab` writes for `cairn serve`
// (schema in docs/lab.md).
type ServeConfig struct {
	Repository  string            `yaml:"repository"`
	Mount       string            `yaml:"mount"`
	Listen      string            `yaml:"listen"`
	Parallelism ParallelismConfig `yaml:"parallelism"`
	Verify      VerifyConfig      `yaml:"verify"`
	VCenters    []VCenterConfig   `yaml:"vcenters"`
	Jobs        []JobConfig       `yaml:"jobs"`
}

// ParallelismConfig caps concurrent VM backups, in total and per ESXi host.
type ParallelismConfig struct {
	VMs     int `yaml:"vms"`
	PerHost int `yaml:"per_host"`
}

// VerifyConfig is the repository verify schedule.
type VerifyConfig struct {
	Schedule string `yaml:"schedule"`
}

// VCenterConfig is one vCenter cairn serve connects to.
type VCenterConfig struct {
	Name        string `yaml:"name"`
	URL         string `yaml:"url"`
	Credentials string `yaml:"credentials"` // file: user, password on two lines, mode 0600
	Thumbprint  string `yaml:"thumbprint"`  // written double-quoted
}

// MarshalYAML writes the thumbprint double-quoted, so that a
// colon-separated value can never be read back as something else.
func (v VCenterConfig) MarshalYAML() (any, error) {
	type plain struct {
		Name        string `yaml:"name"`
		URL         string `yaml:"url"`
		Credentials string `yaml:"credentials"`
		Thumbprint  quoted `yaml:"thumbprint"`
	}
	return plain{Name: v.Name, URL: v.URL, Credentials: v.Credentials, Thumbprint: quoted(v.Thumbprint)}, nil
}

// quoted is a string always written double-quoted, so that a value like a
// colon-separated thumbprint can never be read back as something else.
type quoted string

// MarshalYAML implements yaml.Marshaler.
func (q quoted) MarshalYAML() (any, error) {
	return &yaml.Node{Kind: yaml.ScalarNode, Style: yaml.DoubleQuotedStyle, Value: string(q)}, nil
}

// JobConfig is one scheduled backup job.
type JobConfig struct {
	Name       string          `yaml:"name"`
	VCenter    string          `yaml:"vcenter"`
	VMs        []string        `yaml:"vms,omitempty"`     // names or globs
	Folders    []string        `yaml:"folders,omitempty"` // VM folders (recursive)
	Tags       []string        `yaml:"tags,omitempty"`    // vSphere tags, category:name
	Schedule   string          `yaml:"schedule"`          // interval ("30s") or 5-field cron
	Retention  RetentionConfig `yaml:"retention"`
	Transports []string        `yaml:"transports"`
	NBDCommand string          `yaml:"nbd_command"`
	Quiesce    string          `yaml:"quiesce"`
	Retries    int             `yaml:"retries"`
	RetryDelay string          `yaml:"retry_delay"`
	// VerifyAgainstSourceEvery: every Nth backup of a VM is followed by a
	// full comparison with the VM's disks (catches changes CBT missed).
	VerifyAgainstSourceEvery int `yaml:"verify_against_source_every"`
}

// RetentionConfig says which points a job keeps.
type RetentionConfig struct {
	KeepLast   int `yaml:"keep_last,omitempty"`
	KeepHourly int `yaml:"keep_hourly,omitempty"`
	KeepDaily  int `yaml:"keep_daily,omitempty"`
}

// LabNBDCommand serves a snapshot's flat file of the lab's local datastore
// read-only over NBD.
const LabNBDCommand = "qemu-nbd -r -f raw --persistent -e 4 -k {socket} {disk_local_path}"

// serveConfig is the configuration for this lab.
func (l *Lab) serveConfig(listen, schedule string) ServeConfig {
	return ServeConfig{
		Repository:  filepath.Join(l.Dir, "repo"),
		Mount:       filepath.Join(l.Dir, "mnt"),
		Listen:      listen,
		Parallelism: ParallelismConfig{VMs: 4, PerHost: 2},
		Verify:      VerifyConfig{Schedule: "@every 1h"},
		VCenters: []VCenterConfig{{
			Name: "lab", URL: l.URL, Credentials: l.CredentialsFile, Thumbprint: l.Thumbprint,
		}},
		Jobs: []JobConfig{{
			Name:       "lab",
			VCenter:    "lab",
			Tags:       []string{Tag},
			Schedule:   schedule,
			Retention:  RetentionConfig{KeepLast: 20, KeepHourly: 24, KeepDaily: 7},
			Transports: []string{"file", "nbd"},
			NBDCommand: LabNBDCommand,
			Quiesce:    "auto",
			Retries:    2,
			RetryDelay: "10s",
			// Every 10th backup of a VM reads it whole and compares.
			VerifyAgainstSourceEvery: 10,
		}},
	}
}

// writeFileAtomic writes data to path through a temporary file and a
// rename, so a reader waiting for path never sees it half written.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func marshalConfig(c ServeConfig) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# cairn serve configuration written by `cairn lab` (see docs/lab.md).\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("encode cairn.yaml: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode cairn.yaml: %w", err)
	}
	return buf.Bytes(), nil
}
