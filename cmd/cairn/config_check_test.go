package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd/serve"
)

// TestConfigCheckNextRuns: cairn config check shows cron runs in the
// config's zone, skipping the time a daylight saving change skips
// (02:30 does not exist in Berlin on 2026-03-29), and intervals as "at
// start, then every D".
func TestConfigCheckNextRuns(t *testing.T) {
	cfg, err := serve.ParseConfig("cairn.yaml", []byte(`repository: /srv/cairn/repo
timezone: Europe/Berlin
verify: {schedule: 24h}
vcenters:
  - {name: prod, url: https://vc.example.com/sdk, credentials: /etc/cairn/vc}
jobs:
  - {name: nightly, vcenter: prod, vms: [web-1], schedule: "30 2 * * *"}
  - {name: often, vcenter: prod, vms: [web-2], schedule: 4h}
  - {name: offsite, vms: [kvm-*], replicate: {remote: off, schedule: 6h}}
`))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	printConfigCheck(&b, "cairn.yaml", cfg, time.Date(2026, 3, 28, 12, 0, 0, 0, time.UTC))
	out := b.String()
	for _, want := range []string{
		"cron schedules in Europe/Berlin",
		"Mon 2026-03-30 02:30 CEST, Tue 2026-03-31 02:30 CEST, Wed 2026-04-01 02:30 CEST",
		"at start, then every 4h0m0s",
		"every 24h0m0s from start",
		// A job that only replicates: its replication's runs (was "-").
		"replicate 6h  at start, then every 6h0m0s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("want %q in:\n%s", want, out)
		}
	}
}
