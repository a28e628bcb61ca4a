package notify

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"sort"
	"strings"
	"syscall"
)

// Sentinel errors; delivery errors wrap the last one that applies.
var (
	ErrBadSeverity  = errors.New("unknown severity")
	ErrRefused      = errors.New("connection refused")
	ErrUnreachable  = errors.New("target unreachable")
	ErrTLSUntrusted = errors.New("TLS certificate not trusted")
	ErrAuth         = errors.New("authentication failed")
	ErrRejected     = errors.New("message rejected")
	ErrSecret       = errors.New("secret file unreadable")
)

// DeliveryError is a failed delivery to one target.
type DeliveryError struct {
	Target string
	Err    error
}

func (e *DeliveryError) Error() string { return fmt.Sprintf("notify target %s: %v", e.Target, e.Err) }
func (e *DeliveryError) Unwrap() error { return e.Err }

// classify wraps err with the sentinel that names its cause.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	var cie x509.CertificateInvalidError
	var tve *tls.CertificateVerificationError
	var tpe *textproto.Error
	var ne net.Error
	switch {
	case errors.Is(err, ErrAuth), errors.Is(err, ErrRejected), errors.Is(err, ErrSecret), errors.Is(err, ErrTLSUntrusted), errors.Is(err, ErrRefused), errors.Is(err, ErrUnreachable):
		return err
	case errors.As(err, &uae), errors.As(err, &hne), errors.As(err, &cie), errors.As(err, &tve):
		return fmt.Errorf("%w: %v", ErrTLSUntrusted, err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w: %v", ErrRefused, err)
	case errors.As(err, &tpe) && (tpe.Code == 535 || tpe.Code == 534 || tpe.Code == 530):
		return fmt.Errorf("%w: %v", ErrAuth, err)
	case errors.As(err, &tpe) && tpe.Code >= 500:
		return fmt.Errorf("%w: %v", ErrRejected, err)
	case errors.As(err, &ne), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	return err
}

// permanent reports whether retrying err cannot help (bad credentials,
// an untrusted certificate, a refused message, an unreadable secret).
func permanent(err error) bool {
	return errors.Is(err, ErrAuth) || errors.Is(err, ErrTLSUntrusted) || errors.Is(err, ErrRejected) || errors.Is(err, ErrSecret)
}

// Advice names the fix of a delivery error ("" when there is none to give).
func Advice(err error) string {
	switch {
	case errors.Is(err, ErrRefused):
		return "nothing listens at that address: check the host and port (SMTP submission is usually 587 with tls: starttls, 465 with tls: tls; a webhook's URL), and that the service runs"
	case errors.Is(err, ErrTLSUntrusted):
		return "the server's certificate is not trusted by this machine: give the target ca_file: with the CA that signed it (PEM), or fix the name in host:/url: to match the certificate"
	case errors.Is(err, ErrAuth):
		return "the server refused the user or password: check username: and the password_file: (one line, the password only)"
	case errors.Is(err, ErrSecret):
		return "the secret file cannot be read: check the path and that cairn serve's user may read it (mode 0600, owned by that user)"
	case errors.Is(err, ErrRejected):
		return "the server refused the message: check the addresses (from:, to:), the URL and what the server logged"
	case errors.Is(err, ErrUnreachable):
		return "the target does not answer: check the name, the network path and any firewall between this machine and it"
	}
	return ""
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// redact removes secret from s (an error text that may quote a URL).
func redact(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "[secret]")
}

// redacted is err with a secret removed from its text; errors.Is and As
// still see err.
type redacted struct {
	err    error
	secret string
}

func (r redacted) Error() string { return redact(r.err.Error(), r.secret) }
func (r redacted) Unwrap() error { return r.err }
