// Package notify tells the administrator when something goes wrong in
// cairn serve: it formats events and delivers them to targets.
//
// Vocabulary:
//
//   - Event: one thing worth telling (a Kind, a Severity, the job, VM and
//     point it is about, the error). Kinds are listed in event.go; the
//     JSON a webhook receives is Payload, schema "cairn.notify/v1"
//     (docs/serve.md, "Notifications").
//   - Severity: failure, warning or info; ok marks a recovery (an RPO
//     breach that ended, a VM backed up again after a failure
//     notification). A Filter selects events by severity and job; a target
//     that receives failures also receives the recoveries that end them.
//   - Target: where messages go: a Webhook (HTTP POST of the JSON payload,
//     or a Slack-compatible {"text"}) or an Email (SMTP with STARTTLS,
//     implicit TLS or none, optional PLAIN or LOGIN auth, as the server offers). Secrets (passwords,
//     tokens, secret URLs) are read from files, never from the config, and
//     never logged.
//   - Notifier: the dispatcher. Notify never blocks: each target has a
//     bounded queue and one worker that delivers with a timeout per
//     attempt and retries with doubling backoff, then gives the message
//     up (logged, counted, kept as the target's last error in Status).
//     An event equal to one sent within RepeatAfter (same kind, job, VM
//     and error) is suppressed (de-duplication).
//   - RPO: the recovery point objective of a VM: its newest point must be
//     younger than that. RPOTracker turns periodic observations into one
//     breach and one recovery event per episode (no repeat storm).
//   - State: what a Notifier (events sent recently, backups failing) and
//     an RPOTracker (breaches told) know, as plain data, so that a new
//     one (a reload, a restart of serve) goes on where they stopped.
//   - Test: Test sends one test message to every target at once and
//     returns per-target results; Advice names the fix of a failed one.
package notify
