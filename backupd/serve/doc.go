// Package serve is the cairn daemon: it keeps the repository mounted, runs
// the backup jobs of a cairn.yaml on their schedules (intervals or cron)
// within a total and a per-ESXi-host cap, retries failed VMs, applies
// retention after each successful backup, verifies the repository and
// (every N backups) the VMs against their source, and answers an HTTP API
// with Prometheus metrics (docs/serve.md).
//
// Vocabulary:
//
//   - Config: a validated cairn.yaml (ParseConfig, LoadConfig); a bad one
//     is a *ConfigError naming the line. VCenter: one vCenter's URL,
//     credentials file and thumbprint.
//   - Job: a selection of VMs (names, globs, folders, tags) with its
//     schedule, transports, retention and retries. A job with a vcenter
//     backs up (Job.BacksUp); a job without one only replicates and
//     boot-checks the repository's (imported) VMs (config_imported.go), so
//     a config needs no vCenter at all.
//   - Run: one execution of a job, recorded as a RunRecord (state, VMs,
//     bytes, error); slots (slots.go) cap runs in total and per ESXi host.
//   - Replicate: a job's replicate: section (remote, schedule or
//     after_backup, the remote's retention, verify, limit_rate); each run
//     is a ReplicationRecord, also written to the repository's job log
//     (replicate_jobs.go); RemotePoints is what the API lists of a remote.
//   - BootCheck: a job's boot_check: section, a scheduled verify-boot of
//     the newest point (bootcheck.go).
//   - NotifyConfig: the notify: section (notify_config.go): targets for
//     package notify, the RPO check interval and the report schedule; a
//     job's rpo: (EffectiveRPO, DefaultRPO). notify.go holds the hook
//     points (tell*) that turn failures into notify events, the RPO checks
//     and the report. What the notifications told (RPO breaches, failing backups,
//     recent events) outlives a restart in <repo>/serve-notify.json
//     (NotifyStateFileName, notify_state.go).
//   - RestoreRequest / RestoreRecord: a restore asked through the API and
//     its record; errors carry the request's field names, never CLI flags.
//   - InstantRequest / InstantRecord: an instant recovery session asked
//     through the API (POST /api/v1/instant) and its record (state
//     starting, running, migrating, stopping, migrated, stopped, failed);
//     InstantConfig is the instant: section (cap, session_dir, NFS address
//     and ports). Sessions end with the server; <session_dir>/<id>/serve.json
//     marks a session so the next server cleans up after a killed one.
//   - ServeFile (serve.json): how other cairn commands find the running
//     server (listen address, pid); the API token lives in
//     <repo>/api-token (TokenFileName).
//   - Status, JobStatus, VMStatus, VerifyStatus: what GET /api/v1/status
//     and `cairn status` show; VCenterStatus is a vCenter's last login (at
//     start and by every run, vcheck.go).
//   - Timers (timers.go): each schedule's loop; runs go on in the
//     background, and a reload's new timers follow on from the old ones
//     (no rerun of intervals, no wait for running jobs).
//   - Console (console.go, package webui): the web console at /ui/ and the
//     endpoints it adds: a point's guest filesystems and directory
//     listings (browse_api.go, over guestfind.Browser points kept open
//     in browseState), a file's versions (history_api.go), the
//     repository's space and RPO states (console_overview.go), and
//     downloads through tickets: HMAC-signed, expiring URLs minted by an
//     authenticated POST (download.go).
//   - Hooks (config_hooks.go, hooks.go): a job's hooks: commands, per VM
//     through backupd.VMHooks and per job run (pre_job, post_job); their
//     results are kept in the runs, a skip is state skipped.
//   - Token, Role, Identity (tokens.go, access.go): named API tokens in
//     <repo>/api-tokens.json (SHA-256 hashes only, TokensFileName) with a
//     role each (viewer, operator, admin; the api-token is admin);
//     routeRoles gives every route the role it needs (RolePublic: none).
//     The guard authenticates, authorize checks the role (403 naming it)
//     and writes AuditEvents to <repo>/audit.log (audit.go, AuditFileName;
//     ReadAudit for `cairn audit`); GET /api/v1/whoami tells the console.
//   - Defences (hardening.go, connlimit.go, redact.go): a failLimiter of
//     refusals per client address and per token (429, no audit line), a
//     ticket valid only while its minting token may download
//     (validTicket), audit fields escaped (auditClean), at most
//     MaxConnsPerClient connections per address, and a viewer's hook
//     results without argv and output (redactHooks).
//   - Retention of a VM is the union of the retentions of every job that
//     may back it up (retention.go); a VM a job names exactly that the
//     vCenter lacks is a failed run (missing.go).
package serve
