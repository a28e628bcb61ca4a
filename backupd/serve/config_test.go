package serve

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const goodConfig = `repository: /r/repo
mount: /r/mnt
vcenters:
  - name: lab
    url: https://127.0.0.1:4443/sdk
    credentials: /r/credentials
    thumbprint: "75:CE:57:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:73:23"
jobs:
  - name: lab
    vcenter: lab
    vms:
      - lab-vm-*
    schedule: 30s
    retention:
      keep_last: 20
      keep_daily: 7
    transports: [file, nbd]
    nbd_command: qemu-nbd -r -k {socket} {disk_local_path}
    quiesce: auto
`

func TestLoadConfigGood(t *testing.T) {
	file := filepath.Join(t.TempDir(), "cairn.yaml")
	if err := os.WriteFile(file, []byte(goodConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != DefaultListen || cfg.Repository != "/r/repo" || cfg.Mount != "/r/mnt" {
		t.Errorf("config %+v", cfg)
	}
	j := cfg.Jobs[0]
	if j.Interval != 30*time.Second || j.Retention.KeepLast != 20 || j.Retention.KeepDaily != 7 ||
		len(j.Transports) != 2 || j.VMs[0] != "lab-vm-*" || j.Parallel != 1 || cfg.VCenterByName("lab") == nil {
		t.Errorf("job %+v", j)
	}
}

func TestLoadConfigBad(t *testing.T) {
	for _, tc := range []struct {
		name, from, to string
		line           int
		reason         string
	}{
		{"unknown top key", "mount: /r/mnt", "mount: /r/mnt\nmounts: x", 3, `unknown key "mounts"`},
		{"unknown job key", "    quiesce: auto", "    quiesce: auto\n    colour: red", 20, `unknown key "colour"`},
		{"bad duration", "schedule: 30s", "schedule: soon", 13, "not a duration"},
		{"cron unsupported", "schedule: 30s", `schedule: "*/5 * * * *"`, 13, "cron"},
		{"unknown vcenter", "    vcenter: lab", "    vcenter: prod", 10, `unknown vcenter "prod"`},
		{"missing repository", "repository: /r/repo\n", "", 1, `missing "repository"`},
		{"missing vms", "    vms:\n      - lab-vm-*\n", "", 9, `missing "vms"`},
		{"bad retention", "keep_last: 20", "keep_last: many", 15, "keep_last"},
		{"bad transport", "[file, nbd]", "[file, carrier-pigeon]", 17, "carrier-pigeon"},
		{"bad quiesce", "quiesce: auto", "quiesce: maybe", 19, "maybe"},
		{"bad thumbprint", `thumbprint: "75`, `thumbprint: "ZZ`, 7, "thumbprint"},
		{"syntax error", "jobs:", "jobs: [", 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := strings.Replace(goodConfig, tc.from, tc.to, 1)
			if data == goodConfig {
				t.Fatalf("test case does not change the config")
			}
			_, err := ParseConfig("cairn.yaml", []byte(data))
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a ConfigError", err)
			}
			if tc.line > 0 && ce.Line != tc.line {
				t.Errorf("line %d, want %d (%v)", ce.Line, tc.line, err)
			}
			if tc.line == 0 && ce.Line == 0 {
				t.Errorf("syntax error without a line: %v", err)
			}
			if !strings.Contains(ce.Reason, tc.reason) {
				t.Errorf("reason %q, want it to mention %q", ce.Reason, tc.reason)
			}
		})
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "nope.yaml")); err == nil || IsConfigError(err) {
		t.Fatalf("got %v, want a read error", err)
	}
}
