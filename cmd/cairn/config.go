package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// exampleConfig is what `cairn config example` prints: a commented
// cairn.yaml for `cairn serve` (docs/serve.md).
const exampleConfig = `# cairn.yaml: the configuration of cairn serve (docs/serve.md).
# Check it with: cairn config check cairn.yaml (an invalid file is
# rejected with its line and the reason, as serve does; SIGHUP reloads it).

# The repository (create it first: cairn --repo /srv/cairn/repo init).
repository: /srv/cairn/repo
# Where every recovery point is shown as files while serve runs.
mount: /srv/cairn/mnt
# The HTTP API: /healthz, /metrics, /api/v1/{status,vms,points,jobs,verify}.
# Every request but /healthz needs the token serve writes to
# <repository>/api-token (cairn status, jobs and trigger read it there).
listen: 127.0.0.1:8480
# Beyond loopback the API needs TLS; hosts are the names it answers to
# besides IP addresses and localhost (docs/security.md).
# api:
#   hosts: [backup.example.com]
#   tls_cert: /etc/cairn/api.crt
#   tls_key: /etc/cairn/api.key
# Time zone of cron schedules (default: the machine's).
timezone: Europe/Berlin
# VM backups at once, in total and per ESXi host (VMware advises spreading
# snapshot and NBD load across hosts).
parallelism: {vms: 4, per_host: 2}
# Re-read every stored block and check its hash (as cairn verify does).
verify:
  schedule: "0 4 * * sun"

# The vCenters that jobs back VMs up from. Optional: a repository that only
# cairn import fills (KVM, Proxmox, physical machines, raw images) needs
# none, and serve still mounts, verifies and replicates it (see the
# job without vcenter at the end).
vcenters:
  - name: prod
    url: https://vcenter.example.com/sdk
    # The user on line 1 and the password on line 2; mode 0600.
    credentials: /etc/cairn/vc-credentials
    # SHA-256 thumbprint of a self-signed vCenter certificate (cairn backup
    # prints it when the certificate is not trusted).
    thumbprint: "75:CE:57:10:5A:C0:55:14:F8:73:3E:12:9B:32:E3:7D:B0:1C:9D:0B:5E:6A:43:2C:8D:20:91:AA:73:23:10:FF"

jobs:
  - name: nightly
    vcenter: prod
    # VMs: names or globs, VM folders (with everything below them) and
    # vSphere tags (category:tag, or a tag name); any of them selects.
    vms: ["web-*", "db-1"]
    folders: [production]
    tags: ["backup:nightly"]
    exclude: ["*-scratch"]
    # A cron expression (minute hour day-of-month month day-of-week, or
    # @daily, @hourly...) or an interval (30m, 4h: at start, then every 4h).
    schedule: "30 22 * * *"
    # Kept after each successful backup; the newest point is always kept.
    retention: {keep_last: 7, keep_daily: 14, keep_weekly: 8, keep_monthly: 12}
    # Tried in order (Datto's order is hotadd, then nbd).
    transports: [hotadd, nbd]
    # quiesced snapshots, falling back to crash-consistent ones (auto),
    # or only quiesced (require), or never (off).
    quiesce: auto
    # A failed VM is tried again this often, after retry_delay.
    retries: 2
    retry_delay: 5m
    # Every 10th backup of a VM reads it whole and compares it with the
    # point (catches changes CBT missed); a difference is repaired with a
    # full point unless repair: false.
    verify_against_source_every: 10
    # Boot every new point headless and isolated and keep a verdict and a
    # screenshot (cairn verify-boot; needs qemu-system-x86 and ovmf).
    # boot_check: {after_backup: true, timeout: 10m, max_parallel: 1}
    # Offsite copies to a remote of the repository (cairn remote add and
    # init first; docs/remote.md): after each backup run and/or on a
    # schedule, with the remote's own (usually longer) retention.
    # replicate:
    #   remote: offsite
    #   after_backup: true
    #   retention: {keep_daily: 30, keep_monthly: 24}
    #   verify: "0 5 * * sun"
    #   verify_sample: 10%
    #   limit_rate: 20M                       # bandwidth cap (bytes/s; 100Mbit)
    #   limit_rate_hours: "Mon-Fri 08:00-18:00"  # ... only then

  # A job without vcenter backs nothing up: it replicates (and/or
  # boot-checks, boot_check: {schedule: 24h}) on its own schedule the
  # points cairn import wrote of the VMs its vms: name (docs/serve.md,
  # "Without vCenter").
  # - name: imported-offsite
  #   vms: ["kvm-*", "pve-*"]
  #   replicate:
  #     remote: offsite
  #     schedule: "0 3 * * *"
  #     retention: {keep_daily: 30, keep_monthly: 24}

# Tell someone when something goes wrong (docs/serve.md, Notifications):
# failed backups (after their retries), warnings, verify damage, failed
# replication and boot checks, and VMs whose newest point is older than
# their job's rpo: (default 1.25 times the longest gap of its schedule).
# Secrets come from files. Try it: cairn notify test --config cairn.yaml
# notify:
#   report: "0 7 * * *"               # a daily summary to targets with on: [report]
#   targets:
#     - name: ops-chat
#       webhook:
#         url: https://hooks.example.com/cairn
#         token_file: /etc/cairn/hook-token   # sent as Authorization: Bearer
#       on: [failure, warning]
#     - name: ops-mail
#       email:
#         server: smtp.example.com:587         # STARTTLS (tls: tls for 465)
#         username: cairn
#         password_file: /etc/cairn/smtp-password
#         from: cairn@example.com
#         to: [ops@example.com]
#       on: [failure, report]
`

func configCommands() []*cli.Command {
	return []*cli.Command{{
		Name:  "config",
		Usage: "configuration helpers for cairn serve",
		Subcommands: []*cli.Command{{
			Name:  "example",
			Usage: "print a commented cairn.yaml",
			Action: func(c *cli.Context) error {
				_, err := fmt.Print(exampleConfig)
				return err
			},
		}, configCheckCommand()},
	}}
}
