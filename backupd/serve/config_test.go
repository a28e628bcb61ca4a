package serve

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // Europe/Berlin on machines without zoneinfo
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
	if j.Schedule.String() != "30s" || j.Retries != DefaultRetries || j.RetryDelay != DefaultRetryDelay || !j.Repair || j.Retention.KeepLast != 20 || j.Retention.KeepDaily != 7 ||
		len(j.Transports) != 2 || j.VMs[0] != "lab-vm-*" || j.Parallel != 0 || cfg.VCenterByName("lab") == nil ||
		cfg.Parallelism != (Parallelism{VMs: DefaultParallelVMs, PerHost: DefaultParallelHosts}) || cfg.Verify != nil || cfg.File != file {
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
		{"bad cron", "schedule: 30s", `schedule: "*/5 25 * * *"`, 13, "hour: 25 is outside 0-23"},
		{"cron fields", "schedule: 30s", `schedule: "0 3 * *"`, 13, "has 4 fields"},
		{"no selection", "    vms:\n      - lab-vm-*\n", "", 9, `select VMs with "vms"`},
		{"empty folders", "    vms:\n", "    folders: []\n    vms:\n", 11, "folders is empty"},
		{"bad exclude", "    vms:\n", "    exclude: [\"[\"]\n    vms:\n", 11, `exclude: bad pattern "["`},
		{"bad timezone", "mount: /r/mnt", "mount: /r/mnt\ntimezone: Mars/Olympus", 3, "unknown time zone"},
		{"bad parallelism", "mount: /r/mnt", "mount: /r/mnt\nparallelism:\n  per_host: 0", 4, "per_host: want a number >= 1"},
		{"unknown parallelism key", "mount: /r/mnt", "mount: /r/mnt\nparallelism:\n  hosts: 2", 4, `unknown key "hosts"`},
		{"bad verify schedule", "mount: /r/mnt", "mount: /r/mnt\nverify:\n  schedule: weekly", 4, "not a duration"},
		{"bad retries", "    quiesce: auto", "    quiesce: auto\n    retries: -1", 20, "retries: want a number >= 0"},
		{"bad retry delay", "    quiesce: auto", "    quiesce: auto\n    retry_delay: later", 20, "retry_delay"},
		{"bad verify every", "    quiesce: auto", "    quiesce: auto\n    verify_against_source_every: x", 20, "verify_against_source_every"},
		{"bad parallel", "    quiesce: auto", "    quiesce: auto\n    parallel: 0", 20, "parallel: want a number >= 1"},
		{"unknown vcenter", "    vcenter: lab", "    vcenter: prod", 10, `unknown vcenter "prod"`},
		{"missing repository", "repository: /r/repo\n", "", 1, `missing "repository"`},
		{"bad retention", "keep_last: 20", "keep_last: many", 15, "keep_last"},
		{"bad transport", "[file, nbd]", "[file, carrier-pigeon]", 17, "carrier-pigeon"},
		{"bad quiesce", "quiesce: auto", "quiesce: maybe", 19, "maybe"},
		{"bad thumbprint", `thumbprint: "75`, `thumbprint: "ZZ`, 7, "thumbprint"},
		{"syntax error", "jobs:", "jobs: [", 0, ""},
		{"mount in the repository", "mount: /r/mnt", "mount: /r/repo/mnt", 2, "inside the repository"},
		{"listen beyond loopback without TLS", "mount: /r/mnt", "mount: /r/mnt\nlisten: 0.0.0.0:8480", 3, "tls_cert and tls_key"},
		{"listen on a name without TLS", "mount: /r/mnt", "mount: /r/mnt\nlisten: backup.example.com:8480", 3, "beyond this machine"},
		{"tls cert without key", "mount: /r/mnt", "mount: /r/mnt\napi:\n  tls_cert: /r/c.pem", 4, "both tls_cert and tls_key"},
		{"unknown api key", "mount: /r/mnt", "mount: /r/mnt\napi:\n  token: x", 4, `unknown key "token"`},
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

// TestLoadConfigFull reads every optional key.
func TestLoadConfigFull(t *testing.T) {
	full := strings.Replace(goodConfig, "mount: /r/mnt", `mount: /r/mnt
timezone: Europe/Berlin
parallelism:
  vms: 6
  per_host: 1
verify:
  schedule: "0 4 * * sun"`, 1)
	full = strings.Replace(full, "    schedule: 30s", `    folders: [prod, /DC0/vm/web]
    tags: ["backup:gold", silver]
    exclude: ["*-test"]
    schedule: "30 22 * * mon-fri"
    parallel: 3
    retries: 0
    retry_delay: 90s
    verify_against_source_every: 10
    repair: false`, 1)
	cfg, err := ParseConfig("cairn.yaml", []byte(full))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Location.String() != "Europe/Berlin" || cfg.Parallelism != (Parallelism{VMs: 6, PerHost: 1}) || cfg.Verify == nil || cfg.Verify.String() != "0 4 * * sun" {
		t.Errorf("config %+v", cfg)
	}
	j := cfg.Jobs[0]
	if len(j.Folders) != 2 || j.Tags[0] != "backup:gold" || j.Exclude[0] != "*-test" || j.Parallel != 3 || j.Retries != 0 ||
		j.RetryDelay != 90*time.Second || j.VerifySourceEvery != 10 || j.Repair {
		t.Errorf("job %+v", j)
	}
	// Cron times are in the configured zone: 22:30 in Berlin.
	next := j.Schedule.Next(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC))
	if want := time.Date(2026, 11, 23, 21, 30, 0, 0, time.UTC); !next.Equal(want) {
		t.Errorf("next run %s, want %s", next.UTC(), want)
	}
	if j.SelectsByName("lab-vm-1") == false || j.SelectsByName("lab-vm-test") {
		t.Errorf("SelectsByName: patterns %v exclude %v", j.VMs, j.Exclude)
	}
}
