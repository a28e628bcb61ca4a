package testutil

import (
	"bufio"
	_ "embed"
	"fmt"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

//go:embed smtpd.py
var smtpdScript []byte

// SMTPServer is a real SMTP server (aiosmtpd, Debian python3-aiosmtpd)
// started for a test: it stores every message it accepts in Dir.
type SMTPServer struct {
	Addr string // 127.0.0.1:PORT
	Port int
	Dir  string
}

// SMTPOptions are the server's TLS and auth settings.
type SMTPOptions struct {
	// StartTLS or SMTPS (implicit TLS) with CertFile and KeyFile.
	StartTLS, SMTPS   bool
	CertFile, KeyFile string
	// User and Password require AUTH (over TLS).
	User, Password string
	// AuthExclude are AUTH mechanisms the server does not offer ("PLAIN"
	// leaves a LOGIN-only server like Microsoft 365's).
	AuthExclude []string
	// AuthRefuse are further AUTH mechanisms the server offers ("XOAUTH2"),
	// refusing every login through them.
	AuthRefuse []string
}

// StartSMTP starts the server; it is stopped when the test ends. Skips
// (locally) or fails (CI) without python3-aiosmtpd.
func StartSMTP(t *testing.T, o SMTPOptions) *SMTPServer {
	t.Helper()
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import aiosmtpd").Run(); err != nil {
		missing(t, "python3-aiosmtpd (apt-get install -y python3-aiosmtpd)")
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "smtpd.py")
	if err := os.WriteFile(script, smtpdScript, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "mail")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{script, "127.0.0.1", fmt.Sprint(port), out}
	switch {
	case o.StartTLS:
		args = append(args, "--starttls", o.CertFile, o.KeyFile)
	case o.SMTPS:
		args = append(args, "--smtps", o.CertFile, o.KeyFile)
	}
	if o.User != "" {
		args = append(args, "--auth", o.User, o.Password)
	}
	for _, m := range o.AuthExclude {
		args = append(args, "--auth-exclude", m)
	}
	for _, m := range o.AuthRefuse {
		args = append(args, "--auth-refuse", m)
	}
	cmd := exec.Command(py, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		ok := sc.Scan() && sc.Text() == "READY"
		ready <- ok
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("smtpd did not start: %s", stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("smtpd did not start within 30s: %s", stderr.String())
	}
	return &SMTPServer{Addr: fmt.Sprintf("127.0.0.1:%d", port), Port: port, Dir: out}
}

// Delivered is one message the server accepted.
type Delivered struct {
	From string   // envelope sender
	To   []string // envelope recipients
	TLS  bool     // over TLS (STARTTLS or SMTPS)
	Auth string   // the user logged in ("" without AUTH)
	Msg  *mail.Message
	Body string // the raw body (not decoded)
}

// Messages are the messages delivered so far, in order.
func (s *SMTPServer) Messages(t *testing.T) []Delivered {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(s.Dir, "*.eml"))
	sort.Strings(names)
	var out []Delivered
	for _, n := range names {
		env, err := os.ReadFile(strings.TrimSuffix(n, ".eml") + ".env")
		if err != nil {
			t.Fatal(err)
		}
		var d Delivered
		for _, l := range strings.Split(strings.TrimSpace(string(env)), "\n") {
			k, v, _ := strings.Cut(l, " ")
			switch k {
			case "from":
				d.From = v
			case "to":
				d.To = append(d.To, v)
			case "tls":
				d.TLS = v == "yes"
			case "auth":
				d.Auth = v
			}
		}
		f, err := os.Open(n)
		if err != nil {
			t.Fatal(err)
		}
		d.Msg, err = mail.ReadMessage(f)
		if err != nil {
			f.Close()
			t.Fatalf("%s: %v", n, err)
		}
		var b strings.Builder
		_, _ = bufio.NewReader(d.Msg.Body).WriteTo(&b)
		f.Close()
		d.Body = b.String()
		out = append(out, d)
	}
	return out
}
