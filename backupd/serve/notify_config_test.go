package serve

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd/notify"
	"github.com/cairnbackup/cairn/backupd/schedule"
)

// notifyConfig is goodConfig with a notify: section (line 22 is
// "notify:"); SECRET is replaced by a real file.
const notifyConfig = goodConfig + `    rpo: 26h
notify:
  retries: 2
  retry_delay: 30s
  rpo_check: 1m
  report: "0 7 * * *"
  targets:
    - name: ops-hook
      webhook:
        url: https://hooks.example.com/cairn
        token_file: SECRET
        headers: {X-Team: infra}
      on: [failure, warning]
      jobs: [lab]
    - email:
        server: smtp.example.com:587
        username: cairn
        password_file: SECRET
        from: "cairn <cairn@example.com>"
        to: [ops@example.com]
      on: [failure, report]
`

func writeNotifyConfig(t *testing.T, from, to string) (string, string) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := notifyConfig
	if from != "" {
		if !strings.Contains(data, from) {
			t.Fatalf("%q not in the config", from)
		}
		data = strings.Replace(data, from, to, 1)
	}
	data = strings.ReplaceAll(data, "SECRET", secret)
	loose := filepath.Join(dir, "loose")
	if err := os.WriteFile(loose, []byte("pw\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	data = strings.ReplaceAll(data, "LOOSE", loose)
	file := filepath.Join(dir, "cairn.yaml")
	if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, secret
}

func TestNotifyConfigGood(t *testing.T) {
	file, secret := writeNotifyConfig(t, "", "")
	cfg, err := LoadConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	nc := cfg.Notify
	if nc == nil || len(nc.Targets) != 2 || nc.Retries != 2 || nc.RetryDelay != 30*time.Second || nc.RPOCheck != time.Minute || nc.Report == nil {
		t.Fatalf("notify %+v", nc)
	}
	w, e := nc.Targets[0], nc.Targets[1]
	if w.Name != "ops-hook" || w.Webhook == nil || w.Webhook.TokenFile != secret || w.Webhook.Headers["X-Team"] != "infra" ||
		len(w.Filter.On) != 2 || w.Filter.Jobs[0] != "lab" {
		t.Errorf("webhook target %+v %+v", w, w.Webhook)
	}
	if e.Name != "email-1" || e.Email == nil || e.Email.TLS != notify.TLSStartTLS || e.Email.PasswordFile != secret || e.Email.To[0] != "ops@example.com" ||
		e.Filter.On[1] != "report" {
		t.Errorf("email target %+v %+v", e, e.Email)
	}
	if got := cfg.Jobs[0].EffectiveRPO(); got != 26*time.Hour {
		t.Errorf("rpo %v", got)
	}
}

// TestDefaultRPO: 1.25 times the longest gap between scheduled runs.
func TestDefaultRPO(t *testing.T) {
	from := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		spec string
		want time.Duration
	}{
		{"30s", 38 * time.Second},
		{"1h", 75 * time.Minute},
		{"30 22 * * *", 30 * time.Hour},
		{"0 22 * * mon-fri", 90 * time.Hour}, // Friday 22:00 to Monday 22:00
		{"@hourly", 75 * time.Minute},
	} {
		s, err := schedule.Parse(c.spec, time.UTC)
		if err != nil {
			t.Fatal(err)
		}
		if got := DefaultRPO(s, from); got != c.want {
			t.Errorf("%s: default RPO %v, want %v", c.spec, got, c.want)
		}
	}
	j := Job{VCenter: "x", RPO: RPOOff}
	if j.EffectiveRPO() != 0 {
		t.Error("rpo: off still checks")
	}
}

func TestNotifyConfigBad(t *testing.T) {
	for _, tc := range []struct {
		name, from, to string
		line           int
		reason         string
	}{
		{"unknown notify key", "  retries: 2", "  retries: 2\n  colour: red", 23, `notify: unknown key "colour"`},
		{"unknown target key", "      jobs: [lab]", "      jobs: [lab]\n      cc: [x]", 34, `unknown key "cc"`},
		{"unknown webhook key", "        headers: {X-Team: infra}", "        headers: {X-Team: infra}\n        secret: x", 32, `webhook: unknown key "secret"`},
		{"bad url", "url: https://hooks.example.com/cairn", "url: ftp://hooks", 29, `url "ftp://hooks": want http:// or https://`},
		{"secret in url", "url: https://hooks.example.com/cairn", "url: https://u:p@hooks.example.com/", 29, "credentials in the URL"},
		{"inline authorization", "{X-Team: infra}", "{Authorization: Bearer abc}", 31, "give token_file"},
		{"missing token file", "token_file: SECRET", "token_file: /nonexistent/x", 30, "token_file: stat /nonexistent/x: no such file"},
		{"missing password file", "password_file: SECRET", "password_file: /nonexistent/pw", 37, "password_file: stat /nonexistent/pw: no such file"},
		{"loose password file", "password_file: SECRET", "password_file: LOOSE", 37, "has mode 0644: refusing it; make it readable by its owner only (chmod 600 "},
		{"bad severity", "on: [failure, warning]", "on: [failure, disaster]", 32, `unknown severity "disaster": use failure, warning, info, ok or report`},
		{"unknown job", "jobs: [lab]", "jobs: [lab, nightly]", 33, `unknown job "nightly" (defined: lab)`},
		{"both kinds", "    - email:", "    - webhook: {url: http://x}\n      email:", 34, "exactly one of webhook: and email:"},
		{"bad server", "server: smtp.example.com:587", "server: smtp.example.com", 35, `server "smtp.example.com": want HOST:PORT`},
		{"bad tls", "server: smtp.example.com:587", "server: smtp.example.com:587\n        tls: ssl", 36, `tls "ssl": use starttls`},
		{"clear text password", "server: smtp.example.com:587", "server: smtp.example.com:587\n        tls: none", 36, "password in clear text"},
		{"user without password", "        password_file: SECRET\n", "", 35, "give both username: and password_file:"},
		{"bad to", "to: [ops@example.com]", "to: [ops]", 39, `to "ops": want an address`},
		{"no to", "        to: [ops@example.com]\n", "", 35, `missing "to"`},
		{"bad retries", "retries: 2", "retries: many", 22, "retries: want a number from 0 to 20"},
		{"bad rpo_check", "rpo_check: 1m", "rpo_check: 10ms", 24, `rpo_check "10ms": want a duration`},
		{"bad report", `report: "0 7 * * *"`, `report: "0 25 * * *"`, 25, "notify: report:"},
		{"bad job rpo", "rpo: 26h", "rpo: soon", 20, `rpo "soon": want a duration like 26h`},
		{"unknown format", "        headers: {X-Team: infra}", "        headers: {X-Team: infra}\n        format: teams", 32, `format "teams"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file, _ := writeNotifyConfig(t, tc.from, tc.to)
			_, err := LoadConfig(file)
			if err == nil {
				t.Fatal("accepted")
			}
			ce, ok := err.(*ConfigError)
			if !ok {
				t.Fatalf("%T %v", err, err)
			}
			if ce.Line != tc.line || !strings.Contains(ce.Reason, tc.reason) {
				t.Errorf("got line %d %q, want line %d %q", ce.Line, ce.Reason, tc.line, tc.reason)
			}
		})
	}
}

// TestImportedJobRPO: a job without vcenter may only watch the RPO of
// the repository's VMs.
func TestImportedJobRPO(t *testing.T) {
	cfg, err := ParseConfig("c.yaml", []byte("repository: /r\njobs:\n  - name: kvm\n    vms: [kvm-*]\n    rpo: 26h\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Jobs[0].EffectiveRPO() != 26*time.Hour || cfg.Jobs[0].BacksUp() {
		t.Errorf("job %+v", cfg.Jobs[0])
	}
	if _, err := ParseConfig("c.yaml", []byte("repository: /r\nnotify:\n  targets: []\n")); err == nil || !strings.Contains(err.Error(), "c.yaml:3: notify: give targets:") {
		t.Errorf("notify without targets: %v", err)
	}
	_, err = ParseConfig("c.yaml", []byte("repository: /r\njobs:\n  - name: kvm\n    vms: [kvm-*]\n"))
	if err == nil || !strings.Contains(err.Error(), "or rpo:") {
		t.Errorf("a job without vcenter, replicate, boot_check or rpo: %v", err)
	}
}
