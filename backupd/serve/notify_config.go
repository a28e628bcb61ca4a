package serve

import (
	"fmt"
	"math"
	"net"
	"net/mail"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cairnbackup/cairn/backupd/notify"
	"github.com/cairnbackup/cairn/backupd/schedule"
)

// DefaultRPOCheck is how often RPOs are checked when notify: gives no
// rpo_check.
const DefaultRPOCheck = 5 * time.Minute

// NotifyConfig is the notify: section: where serve tells what went
// wrong (docs/serve.md, "Notifications").
type NotifyConfig struct {
	Targets []notify.TargetConfig
	// Retries, RetryDelay and RepeatAfter as notify.Options (0: default).
	Retries     int
	RetryDelay  time.Duration
	RepeatAfter time.Duration
	// RPOCheck is how often every VM's newest point is compared with its
	// job's RPO.
	RPOCheck time.Duration
	// Report sends the summary of every VM (nil: none).
	Report schedule.Schedule
}

// RPOOff is Job.RPO of rpo: off.
const RPOOff = time.Duration(-1)

// EffectiveRPO is the job's RPO: rpo: when given (0 when off), else for
// a job that backs up 1.25 times the longest gap between two of its
// scheduled runs (a daily job: 30h, hourly: 1h15m), else 0 (no check).
func (j *Job) EffectiveRPO() time.Duration {
	switch {
	case j.RPO == RPOOff:
		return 0
	case j.RPO > 0:
		return j.RPO
	case j.BacksUp() && j.Schedule != nil:
		return DefaultRPO(j.Schedule, time.Now())
	}
	return 0
}

// DefaultRPO is 1.25 times the longest gap between consecutive runs of s
// after from (looked at over a month), rounded up to a second.
func DefaultRPO(s schedule.Schedule, from time.Time) time.Duration {
	first := s.Next(from)
	t, gap := first, time.Duration(0)
	for i := 0; i < 2000; i++ {
		n := s.Next(t)
		if !n.After(t) {
			break
		}
		gap = max(gap, n.Sub(t))
		if n.Sub(first) > 32*24*time.Hour {
			break
		}
		t = n
	}
	if gap <= 0 {
		return 0
	}
	return time.Duration(math.Ceil(float64(gap)*1.25/float64(time.Second))) * time.Second
}

// jobRPO reads a job's rpo: (a duration, or off).
func (p *parser) jobRPO(m map[string]*yaml.Node, what string, j *Job) error {
	v := m["rpo"]
	if v == nil {
		return nil
	}
	if v.Kind == yaml.ScalarNode && (v.Value == "off" || v.Value == "false") {
		j.RPO = RPOOff
		return nil
	}
	d, err := time.ParseDuration(v.Value)
	if err != nil || d <= 0 || v.Kind != yaml.ScalarNode {
		return p.errf(v, "%s: rpo %q: want a duration like 26h (the newest point's greatest age before an alert) or off", what, v.Value)
	}
	j.RPO = d
	return nil
}

func (p *parser) notifyConfig(n *yaml.Node, cfg *Config) (*NotifyConfig, error) {
	m, err := p.fields(n, "notify", "targets", "retries", "retry_delay", "repeat_after", "rpo_check", "report")
	if err != nil {
		return nil, err
	}
	nc := &NotifyConfig{RPOCheck: DefaultRPOCheck}
	if v := m["retries"]; v != nil {
		if err := v.Decode(&nc.Retries); err != nil || nc.Retries < 0 || nc.Retries > 20 {
			return nil, p.errf(v, "notify: retries: want a number from 0 to 20")
		}
		if nc.Retries == 0 {
			nc.Retries = -1 // none (0 is the default in notify.Options)
		}
	}
	for key, dst := range map[string]*time.Duration{"retry_delay": &nc.RetryDelay, "repeat_after": &nc.RepeatAfter, "rpo_check": &nc.RPOCheck} {
		v := m[key]
		if v == nil {
			continue
		}
		d, err := time.ParseDuration(v.Value)
		if err != nil || v.Kind != yaml.ScalarNode || d < 0 || (key != "repeat_after" && d < time.Second) {
			return nil, p.errf(v, "notify: %s %q: want a duration like 30s, 5m or 12h", key, v.Value)
		}
		if key == "repeat_after" && d == 0 {
			d = -1 // never suppress
		}
		*dst = d
	}
	if v := m["report"]; v != nil {
		spec, err := p.str(m, "report", "notify", true, n)
		if err != nil {
			return nil, err
		}
		if nc.Report, err = schedule.Parse(spec, cfg.Location); err != nil {
			return nil, p.errf(v, "notify: report: %v", err)
		}
	}
	targets, err := p.list(m, "targets")
	if err != nil {
		return nil, err
	}
	if len(targets) == 0 {
		return nil, p.errf(n, "notify: give targets: (a list of webhook: or email: targets, see docs/serve.md)")
	}
	counts := map[string]int{}
	for _, tn := range targets {
		tc, err := p.notifyTarget(tn, cfg, counts)
		if err != nil {
			return nil, err
		}
		for _, o := range nc.Targets {
			if o.Name == tc.Name {
				return nil, p.errf(tn, "notify: target %q defined twice", tc.Name)
			}
		}
		nc.Targets = append(nc.Targets, tc)
	}
	return nc, nil
}

func (p *parser) notifyTarget(n *yaml.Node, cfg *Config, counts map[string]int) (notify.TargetConfig, error) {
	var tc notify.TargetConfig
	m, err := p.fields(n, "notify target", "name", "webhook", "email", "on", "jobs")
	if err != nil {
		return tc, err
	}
	if (m["webhook"] == nil) == (m["email"] == nil) {
		return tc, p.errf(n, "notify target: give exactly one of webhook: and email:")
	}
	typ := "webhook"
	if m["email"] != nil {
		typ = "email"
	}
	counts[typ]++
	if tc.Name, err = p.str(m, "name", "notify target", false, n); err != nil {
		return tc, err
	}
	if tc.Name == "" {
		tc.Name = fmt.Sprintf("%s-%d", typ, counts[typ])
	}
	what := fmt.Sprintf("notify target %q", tc.Name)
	if v := m["on"]; v != nil {
		list, err := p.strs(v, what+": on")
		if err != nil {
			return tc, err
		}
		for _, s := range list {
			sev, err := notify.ParseSeverity(s)
			if err != nil {
				return tc, p.errf(v, "%s: on: %v", what, err)
			}
			tc.Filter.On = append(tc.Filter.On, sev)
		}
	}
	if v := m["jobs"]; v != nil {
		if tc.Filter.Jobs, err = p.strs(v, what+": jobs"); err != nil {
			return tc, err
		}
		for _, j := range tc.Filter.Jobs {
			if !slices.ContainsFunc(cfg.Jobs, func(x Job) bool { return x.Name == j }) {
				var names []string
				for _, x := range cfg.Jobs {
					names = append(names, x.Name)
				}
				return tc, p.errf(v, "%s: jobs: unknown job %q (defined: %s)", what, j, strings.Join(names, ", "))
			}
		}
	}
	if v := m["webhook"]; v != nil {
		tc.Webhook, err = p.webhook(v, what)
	} else {
		tc.Email, err = p.email(m["email"], what)
	}
	return tc, err
}

// secretFile checks that the file named by key exists and is readable,
// and when it holds a secret that only its owner may read it.
func (p *parser) secretFile(m map[string]*yaml.Node, key, what string, parent *yaml.Node) (string, error) {
	f, err := p.str(m, key, what, false, parent)
	if err != nil || f == "" {
		return f, err
	}
	if key == "ca_file" {
		fh, err := os.Open(f)
		if err != nil {
			return "", p.errf(m[key], "%s: %s %s: %v", what, key, f, err)
		}
		fh.Close()
		return f, nil
	}
	if err := notify.CheckSecretFile(f); err != nil {
		return "", p.errf(m[key], "%s: %s: %s (create it, mode 0600, owned by cairn serve's user)", what, key, strings.TrimPrefix(err.Error(), notify.ErrSecret.Error()+": "))
	}
	return f, nil
}

func (p *parser) webhook(n *yaml.Node, what string) (*notify.WebhookConfig, error) {
	what += ": webhook"
	m, err := p.fields(n, what, "url", "url_file", "headers", "token_file", "format", "ca_file")
	if err != nil {
		return nil, err
	}
	w := &notify.WebhookConfig{}
	if w.URL, err = p.str(m, "url", what, false, n); err != nil {
		return nil, err
	}
	if w.URLFile, err = p.secretFile(m, "url_file", what, n); err != nil {
		return nil, err
	}
	if (w.URL == "") == (w.URLFile == "") {
		return nil, p.errf(n, "%s: give url: or url_file: (a file holding the URL, when the URL is itself a secret)", what)
	}
	if w.URL != "" {
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, p.errf(m["url"], "%s: url %q: want http:// or https:// with a host (like https://hooks.example.com/cairn)", what, w.URL)
		}
		if u.User != nil {
			return nil, p.errf(m["url"], "%s: url: credentials in the URL would sit in the config: give token_file:, or url_file:", what)
		}
	}
	if v := m["headers"]; v != nil {
		if v.Kind != yaml.MappingNode {
			return nil, p.errf(v, "%s: headers: want a mapping (Name: value)", what)
		}
		w.Headers = map[string]string{}
		for i := 0; i+1 < len(v.Content); i += 2 {
			k, val := v.Content[i], v.Content[i+1]
			if val.Kind != yaml.ScalarNode || k.Value == "" {
				return nil, p.errf(k, "%s: headers: %q: want a string value", what, k.Value)
			}
			if strings.EqualFold(k.Value, "Authorization") {
				return nil, p.errf(k, "%s: headers: Authorization would put a secret in the config: give token_file: FILE (sent as Authorization: Bearer TOKEN)", what)
			}
			w.Headers[k.Value] = val.Value
		}
	}
	if w.TokenFile, err = p.secretFile(m, "token_file", what, n); err != nil {
		return nil, err
	}
	if w.CAFile, err = p.secretFile(m, "ca_file", what, n); err != nil {
		return nil, err
	}
	if w.Format, err = p.str(m, "format", what, false, n); err != nil {
		return nil, err
	}
	switch w.Format {
	case "", notify.FormatJSON, notify.FormatSlack:
	default:
		return nil, p.errf(m["format"], "%s: format %q: use json (cairn's schema) or slack ({\"text\"}: Slack, Mattermost, Rocket.Chat)", what, w.Format)
	}
	return w, nil
}

func (p *parser) email(n *yaml.Node, what string) (*notify.EmailConfig, error) {
	what += ": email"
	m, err := p.fields(n, what, "server", "tls", "ca_file", "username", "password_file", "from", "to")
	if err != nil {
		return nil, err
	}
	e := &notify.EmailConfig{}
	if e.Server, err = p.str(m, "server", what, true, n); err != nil {
		return nil, err
	}
	host, port, err := net.SplitHostPort(e.Server)
	if err != nil || host == "" || port == "" {
		return nil, p.errf(m["server"], "%s: server %q: want HOST:PORT (like smtp.example.com:587)", what, e.Server)
	}
	if e.TLS, err = p.str(m, "tls", what, false, n); err != nil {
		return nil, err
	}
	switch e.TLS {
	case "":
		e.TLS = notify.TLSStartTLS
	case notify.TLSStartTLS, notify.TLSImplicit, notify.TLSNone:
	default:
		return nil, p.errf(m["tls"], "%s: tls %q: use starttls (port 587), tls (implicit, port 465) or none (a relay on a trusted network)", what, e.TLS)
	}
	if e.CAFile, err = p.secretFile(m, "ca_file", what, n); err != nil {
		return nil, err
	}
	if e.Username, err = p.str(m, "username", what, false, n); err != nil {
		return nil, err
	}
	if e.PasswordFile, err = p.secretFile(m, "password_file", what, n); err != nil {
		return nil, err
	}
	if (e.Username == "") != (e.PasswordFile == "") {
		return nil, p.errf(n, "%s: give both username: and password_file: (a file holding the password), or neither", what)
	}
	if e.Username != "" && e.TLS == notify.TLSNone {
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, p.errf(m["tls"], "%s: username: with tls: none would send the password in clear text: use tls: starttls or tls", what)
		}
	}
	if e.From, err = p.str(m, "from", what, true, n); err != nil {
		return nil, err
	}
	if _, err := mail.ParseAddress(e.From); err != nil {
		return nil, p.errf(m["from"], "%s: from %q: want an address like cairn@example.com: %v", what, e.From, err)
	}
	v := m["to"]
	if v == nil {
		return nil, p.errf(n, "%s: missing \"to\" (a list of addresses)", what)
	}
	if e.To, err = p.strs(v, what+": to"); err != nil {
		return nil, err
	}
	if len(e.To) == 0 {
		return nil, p.errf(v, "%s: to is empty", what)
	}
	for _, a := range e.To {
		if _, err := mail.ParseAddress(a); err != nil {
			return nil, p.errf(v, "%s: to %q: want an address like ops@example.com: %v", what, a, err)
		}
	}
	return e, nil
}
