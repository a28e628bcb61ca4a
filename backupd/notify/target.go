package notify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"slices"
	"strings"
)

// TargetConfig is one notify target of the config: exactly one of
// Webhook and Email, and the filter of the events it receives.
type TargetConfig struct {
	Name    string // unique; default "webhook-N" / "email-N" (1-based)
	Webhook *WebhookConfig
	Email   *EmailConfig
	Filter  Filter
}

// Type is "webhook" or "email".
func (t TargetConfig) Type() string {
	if t.Webhook != nil {
		return "webhook"
	}
	return "email"
}

// Filter selects the events a target receives.
type Filter struct {
	// On lists severities (failure, warning, info, ok) and "report";
	// empty means failure and warning. A target that receives failures or warnings
	// also receives the recoveries (ok) that end them.
	On []Severity
	// Jobs limits the target to these jobs' events (empty: all). Events
	// that belong to no job (repository verify, report, test) reach every
	// target.
	Jobs []string
}

// Match reports whether the filter lets ev through.
func (f Filter) Match(ev Event) bool {
	if ev.Kind == Test {
		return true
	}
	on := f.On
	if len(on) == 0 {
		on = []Severity{Failure, Warning}
	}
	if len(f.Jobs) > 0 && ev.Job != "" && !slices.Contains(f.Jobs, ev.Job) {
		return false
	}
	switch {
	case ev.Kind == Report:
		return slices.Contains(on, "report")
	case ev.Severity == OK:
		return slices.Contains(on, OK) || slices.Contains(on, Failure) || slices.Contains(on, Warning)
	}
	return slices.Contains(on, ev.Severity)
}

// sender delivers one event in one attempt.
type sender interface {
	send(ctx context.Context, ev Event, host string) error
}

func newSender(tc TargetConfig) (sender, error) {
	switch {
	case tc.Webhook != nil && tc.Email == nil:
		return &webhook{cfg: *tc.Webhook}, nil
	case tc.Email != nil && tc.Webhook == nil:
		return &email{cfg: *tc.Email}, nil
	}
	return nil, fmt.Errorf("notify target %s: give exactly one of webhook and email", tc.Name)
}

// readSecret is the first line of file (a password, a token, a URL),
// read at each delivery so that a rotated secret takes effect at once.
func readSecret(file string) (string, error) {
	if err := CheckSecretFile(file); err != nil {
		return "", err
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrSecret, err)
	}
	s, _, _ := strings.Cut(string(data), "\n")
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("%w: %s is empty", ErrSecret, file)
	}
	return s, nil
}

// CheckSecretFile refuses a secret file that is not a regular file or
// that others than its owner may read (like vCenter credentials files).
func CheckSecretFile(file string) error {
	fi, err := os.Stat(file)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrSecret, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: %s is not a regular file", ErrSecret, file)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %04o: refusing it; make it readable by its owner only (chmod 600 %s)", ErrSecret, file, perm, file)
	}
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrSecret, err)
	}
	return f.Close()
}

// tlsConfig trusts the system's roots, plus caFile's when given.
func tlsConfig(serverName, caFile string) (*tls.Config, error) {
	c := &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return c, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_file %s holds no PEM certificate", caFile)
	}
	c.RootCAs = pool
	return c, nil
}
