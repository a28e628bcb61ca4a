package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"strings"
	"time"
)

// EmailConfig is an e-mail target: one message per event over SMTP.
type EmailConfig struct {
	Server string // host:port (587 submission with STARTTLS, 465 implicit TLS, 25)
	// TLS is TLSStartTLS (default), TLSImplicit or TLSNone.
	TLS    string
	CAFile string // PEM file of CAs trusted besides the system's
	// Username and PasswordFile (first line: the password) log in with
	// SMTP AUTH PLAIN, or AUTH LOGIN where the server offers no PLAIN,
	// only over TLS (or to localhost).
	Username, PasswordFile string
	From                   string
	To                     []string
}

// TLS modes of an e-mail target.
const (
	TLSStartTLS = "starttls"
	TLSImplicit = "tls"
	TLSNone     = "none"
)

// ErrNoStartTLS is a server that does not offer STARTTLS to a target that
// asks for it.
var ErrNoStartTLS = errors.New("the SMTP server does not offer STARTTLS")

type email struct{ cfg EmailConfig }

func (e *email) send(ctx context.Context, ev Event, host string) error {
	c := e.cfg
	hostname, _, err := net.SplitHostPort(c.Server)
	if err != nil {
		return fmt.Errorf("%w: server %q: want HOST:PORT", ErrRejected, c.Server)
	}
	password := ""
	if c.PasswordFile != "" {
		if password, err = readSecret(c.PasswordFile); err != nil {
			return err
		}
	}
	tc, err := tlsConfig(hostname, c.CAFile)
	if err != nil {
		return err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.Server)
	if err != nil {
		return classify(err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if c.TLS == TLSImplicit {
		tconn := tls.Client(conn, tc)
		if err := tconn.HandshakeContext(ctx); err != nil {
			return classify(err)
		}
		conn = tconn
	}
	cl, err := smtp.NewClient(conn, hostname)
	if err != nil {
		return classify(err)
	}
	defer cl.Close()
	if err := cl.Hello(localName(host)); err != nil {
		return classify(err)
	}
	if c.TLS == "" || c.TLS == TLSStartTLS {
		if ok, _ := cl.Extension("STARTTLS"); !ok {
			return ErrNoStartTLS
		}
		if err := cl.StartTLS(tc); err != nil {
			return classify(err)
		}
	}
	if c.Username != "" {
		ok, mechs := cl.Extension("AUTH")
		if !ok {
			return fmt.Errorf("%w: the server offers no AUTH (give no username: for a relay that needs none)", ErrAuth)
		}
		auth, err := pickAuth(mechs, c.Username, password, hostname)
		if err != nil {
			return err
		}
		if err := cl.Auth(auth); err != nil {
			return redacted{classify(authErr(err)), password}
		}
	}
	if err := cl.Mail(address(c.From)); err != nil {
		return classify(err)
	}
	for _, to := range c.To {
		if err := cl.Rcpt(address(to)); err != nil {
			return classify(err)
		}
	}
	w, err := cl.Data()
	if err != nil {
		return classify(err)
	}
	if _, err := w.Write(Message(c.From, c.To, ev, host, time.Now())); err != nil {
		return classify(err)
	}
	if err := w.Close(); err != nil {
		return classify(err)
	}
	_ = cl.Quit()
	return nil
}

// pickAuth is the login mechanism for the server's EHLO AUTH list
// (mechs): PLAIN where offered, else LOGIN (Microsoft 365, Exchange).
func pickAuth(mechs, username, password, hostname string) (smtp.Auth, error) {
	offered := strings.Fields(strings.ToUpper(mechs))
	has := func(m string) bool {
		for _, o := range offered {
			if o == m {
				return true
			}
		}
		return false
	}
	switch {
	case has("PLAIN"):
		return smtp.PlainAuth("", username, password, hostname), nil
	case has("LOGIN"):
		return &loginAuth{username: username, password: password, host: hostname}, nil
	}
	return nil, fmt.Errorf("%w: the server offers AUTH %s; cairn logs in with PLAIN or LOGIN (enable one of them for this account, or use a relay that does)", ErrAuth, strings.Join(offered, " "))
}

// loginAuth is SMTP AUTH LOGIN (draft-murchison-sasl-login): the server
// asks for the username and then the password, each base64 (net/smtp
// does the encoding). Like net/smtp's PlainAuth it sends the password
// only over TLS or to localhost.
type loginAuth struct {
	username, password, host string
	step                     int
}

func (a *loginAuth) Start(server *smtp.ServerInfo) (string, []byte, error) {
	if !server.TLS && !isLocalhost(server.Name) {
		return "", nil, errors.New("unencrypted connection")
	}
	if server.Name != a.host {
		return "", nil, errors.New("wrong host name")
	}
	a.step = 0
	return "LOGIN", nil, nil
}

func (a *loginAuth) Next(fromServer []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	a.step++
	prompt := strings.ToLower(strings.TrimSpace(string(fromServer)))
	switch {
	case strings.HasPrefix(prompt, "user"):
		return []byte(a.username), nil
	case strings.HasPrefix(prompt, "pass"):
		return []byte(a.password), nil
	case a.step == 1:
		return []byte(a.username), nil
	case a.step == 2:
		return []byte(a.password), nil
	}
	return nil, fmt.Errorf("unexpected AUTH LOGIN challenge %q", fromServer)
}

func isLocalhost(name string) bool {
	return name == "localhost" || name == "127.0.0.1" || name == "::1"
}

// authErr marks a refused AUTH (net/smtp's own refusals too, like PLAIN
// over an unencrypted connection) as ErrAuth.
func authErr(err error) error {
	if errors.Is(err, ErrAuth) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrAuth, err)
}

// address is the bare address of "Name <a@b>" or "a@b".
func address(s string) string {
	if a, err := mail.ParseAddress(s); err == nil {
		return a.Address
	}
	return s
}

func localName(host string) string {
	if host == "" || strings.ContainsAny(host, " \r\n") {
		return "localhost"
	}
	return host
}

// Message is the RFC 5322 message of ev: plain text, UTF-8,
// quoted-printable, with X-Cairn-Kind and X-Cairn-Severity headers for
// mail filters.
func Message(from string, to []string, ev Event, host string, now time.Time) []byte {
	var b bytes.Buffer
	subject := "[cairn " + host + "] " + ev.Title()
	var id [12]byte
	_, _ = rand.Read(id[:])
	hdr := func(k, v string) {
		fmt.Fprintf(&b, "%s: %s\r\n", k, strings.NewReplacer("\r", " ", "\n", " ").Replace(v))
	}
	hdr("From", from)
	hdr("To", strings.Join(to, ", "))
	hdr("Subject", mime.QEncoding.Encode("utf-8", subject))
	hdr("Date", now.Format(time.RFC1123Z))
	hdr("Message-ID", "<"+hex.EncodeToString(id[:])+"@"+localName(host)+">")
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "quoted-printable")
	hdr("X-Cairn-Kind", string(ev.Kind))
	hdr("X-Cairn-Severity", string(ev.Severity))
	if ev.VM != "" {
		hdr("X-Cairn-VM", mime.QEncoding.Encode("utf-8", ev.VM))
	}
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(strings.ReplaceAll(ev.Text(host), "\n", "\r\n")))
	_ = qp.Close()
	return b.Bytes()
}
