package serve

import (
	"errors"
	"strings"
	"testing"
)

// TestConfigWithoutVCenter: configs without vcenters (repositories that
// cairn import fills) are valid, with jobs that only replicate or
// boot-check the VMs their vms: name; a job that backs up from vSphere
// still needs a vcenter, and the errors say which one and how to fix it.
func TestConfigWithoutVCenter(t *testing.T) {
	good := []struct {
		name, yaml string
		jobs       int
	}{
		{"repository only", "repository: /r\n", 0},
		{"repository and mount", "repository: /r\nmount: /m\n", 0},
		{"verify schedule", "repository: /r\nverify: {schedule: \"0 4 * * sun\"}\n", 0},
		{"empty lists", "repository: /r\nvcenters: []\njobs: []\n", 0},
		{"keys without values", "repository: /r\nvcenters:\njobs:\n", 0},
		{"replicating job", "repository: /r\njobs:\n  - name: off\n    vms: [kvm-*, pve-101]\n    exclude: [kvm-test]\n    replicate: {remote: off, schedule: 6h, retention: {keep_daily: 30}, verify: 168h}\n", 1},
		{"boot-checking job", "repository: /r\njobs:\n  - name: boot\n    vms: [kvm-*]\n    boot_check: {schedule: 24h}\n", 1},
		{"boot check with firmware", "repository: /r\njobs:\n  - name: boot\n    vms: [kvm-*]\n    boot_check: {schedule: 24h, firmware: efi}\n", 1},
		{"mixed with a vSphere job", "repository: /r\nvcenters: [{name: v, url: https://vc/sdk, credentials: /c}]\njobs:\n  - {name: n, vcenter: v, vms: [a], schedule: 1h}\n  - {name: i, vms: [kvm-*], replicate: {remote: off, schedule: 1h}}\n", 2},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig("c.yaml", []byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.Jobs) != tc.jobs {
				t.Fatalf("%d jobs, want %d", len(cfg.Jobs), tc.jobs)
			}
			for _, j := range cfg.Jobs {
				if j.BacksUp() != (j.VCenter != "") || (!j.BacksUp() && j.Schedule != nil) {
					t.Errorf("job %s: BacksUp %v, schedule %v", j.Name, j.BacksUp(), j.Schedule)
				}
			}
		})
	}
	cfg, err := ParseConfig("c.yaml", []byte(good[5].yaml))
	if err != nil {
		t.Fatal(err)
	}
	if j := cfg.Jobs[0]; j.Replicate == nil || j.Replicate.Remote != "off" || j.Replicate.Retention.KeepDaily != 30 ||
		!j.SelectsByName("kvm-1") || !j.SelectsByName("pve-101") || j.SelectsByName("kvm-test") || j.SelectsByName("web-1") {
		t.Errorf("replicating job %+v", j)
	}

	vc := "vcenters: [{name: prod, url: https://vc/sdk, credentials: /c}]\n"
	bad := []struct {
		name, yaml string
		line       int
		want       []string
	}{
		{"backup job without vcenters", "repository: /r\njobs:\n  - name: n\n    vcenter: prod\n    vms: [a]\n    schedule: 1h\n", 4,
			[]string{`job "n": unknown vcenter "prod"`, `no "vcenters" list`, "name: prod"}},
		{"unknown vcenter lists the defined", "repository: /r\n" + vc + "jobs:\n  - name: n\n    vcenter: test\n    vms: [a]\n    schedule: 1h\n", 5,
			[]string{`unknown vcenter "test"`, "defined: prod"}},
		{"schedule without vcenter", "repository: /r\njobs:\n  - name: n\n    vms: [a]\n    schedule: 1h\n", 5,
			[]string{`job "n": schedule needs vcenter: NAME`, `no "vcenters" list`}},
		{"schedule without vcenter, vcenters defined", "repository: /r\n" + vc + "jobs:\n  - name: n\n    vms: [a]\n    schedule: 1h\n", 6,
			[]string{`job "n": schedule needs vcenter: NAME, a vcenter of the "vcenters" list`}},
		{"folders without vcenter", "repository: /r\njobs:\n  - name: n\n    folders: [prod]\n    replicate: {remote: off, schedule: 1h}\n", 4,
			[]string{"folders needs vcenter"}},
		{"retention without vcenter", "repository: /r\njobs:\n  - name: n\n    vms: [a]\n    retention: {keep_last: 3}\n    replicate: {remote: off, schedule: 1h}\n", 5,
			[]string{"retention needs vcenter"}},
		{"no vms", "repository: /r\njobs:\n  - name: n\n    replicate: {remote: off, schedule: 1h}\n", 3,
			[]string{`job "n": name the repository's VMs with "vms"`}},
		{"nothing to do", "repository: /r\njobs:\n  - name: n\n    vms: [a]\n", 3,
			[]string{"give replicate: or boot_check:"}},
		{"replicate after backup", "repository: /r\njobs:\n  - name: n\n    vms: [a]\n    replicate:\n      remote: off\n      after_backup: true\n", 7,
			[]string{"replicate: after_backup needs backups", "give schedule:"}},
		{"bad firmware", "repository: /r\njobs:\n  - name: n\n    vms: [a]\n    boot_check: {schedule: 24h, firmware: uefi}\n", 5,
			[]string{`firmware "uefi": want bios or efi`}},
		{"boot check after backup", "repository: /r\njobs:\n  - name: n\n    vms: [a]\n    boot_check: {timeout: 5m}\n", 5,
			[]string{"boot_check: after_backup needs backups"}},
		{"bad vms pattern", "repository: /r\njobs:\n  - name: n\n    vms: [\"[\"]\n    replicate: {remote: off, schedule: 1h}\n", 4,
			[]string{`vms: bad pattern "["`}},
		{"vcenters not a list", "repository: /r\nvcenters: prod\n", 2, []string{"vcenters: want a list"}},
		{"jobs not a list", "repository: /r\njobs: {name: n}\n", 2, []string{"jobs: want a list"}},
		{"replicate still checked", "repository: /r\njobs:\n  - name: n\n    vms: [a]\n    replicate: {schedule: 1h}\n", 5,
			[]string{`missing "remote"`}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("c.yaml", []byte(tc.yaml))
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a ConfigError", err)
			}
			if ce.Line != tc.line {
				t.Errorf("line %d, want %d (%v)", ce.Line, tc.line, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(ce.Reason, w) {
					t.Errorf("reason %q, want it to say %q", ce.Reason, w)
				}
			}
		})
	}
}
