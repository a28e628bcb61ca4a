// Package schedule parses the schedules of cairn serve jobs: an interval
// ("30s", "15m", "24h", "@every 1h") or a cron expression (five fields,
// "@hourly", "@daily", ...), and says when a job runs next.
package schedule
