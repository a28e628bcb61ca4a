package serve

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// This file holds the defences an adversarial review of the API added
// (docs/security.md, Threats): refused credentials limited per client,
// download tickets that die with their minter's token, audit lines that
// cannot be forged, and the security headers on the guard's own answers.

// Bounds of refused credentials (bad or missing tokens, bad tickets) per
// client address: failBurst at once, then one every failEvery. A client
// past them gets 429 and no audit line (the next line from it says how
// many were left out), so that nobody without a token can flood the audit
// log and rotate the admins' actions out of it. A valid token is always
// accepted: a user behind the same address as an attacker is not locked
// out.
const (
	failBurst   = 10
	failEvery   = 6 * time.Second
	failClients = 4096 // addresses tracked; beyond, they share one bucket
)

// failLimiter is a token bucket of refusals per client address.
type failLimiter struct {
	mu      sync.Mutex
	clients map[string]*failBucket
}

// failRate is failEvery as tokens a second.
var failRate = 1 / failEvery.Seconds()

type failBucket struct {
	bucket
	dropped int // refusals answered 429 without an audit line since the last audited one
}

func newFailLimiter() *failLimiter { return &failLimiter{clients: map[string]*failBucket{}} }

// clientKey is the address a bucket counts: the IP (an IPv6 client's
// /64, which one host usually holds whole).
func clientKey(remote string) string {
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}

// refused counts a refusal of remote (a client's address, or "token
// NAME" for a valid token refused by its role) at now: whether it may be audited
// (and answered as usual), how many refusals before it were not, and,
// when not, how long the client should wait.
func (l *failLimiter) refused(remote string, now time.Time) (ok bool, dropped int, wait time.Duration) {
	if l == nil {
		return true, 0, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	key := clientKey(remote)
	b := l.clients[key]
	if b == nil {
		if len(l.clients) >= failClients {
			for k, o := range l.clients { // forget the clients whose buckets are full again
				if o.dropped == 0 && o.level(now, failRate, failBurst) >= failBurst {
					delete(l.clients, k)
				}
			}
		}
		if len(l.clients) >= failClients {
			key = "*"
			b = l.clients[key]
		}
		if b == nil {
			b = &failBucket{bucket: bucket{tokens: failBurst, last: now}}
			l.clients[key] = b
		}
	}
	if ok, wait := b.take(now, failRate, failBurst); !ok {
		b.dropped++
		return false, 0, wait
	}
	dropped, b.dropped = b.dropped, 0
	return true, dropped, 0
}

// tooManyRefusals answers a client past its refusals.
func (s *Server) tooManyRefusals(w http.ResponseWriter, wait time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	s.refuse(w, "too_many_refusals", http.StatusTooManyRequests,
		fmt.Errorf("too many refused tokens, download URLs or requests beyond the token's role: wait %s", wait.Round(time.Second)))
}

// droppedDetail notes in an audit line the refusals left out before it.
func droppedDetail(detail string, dropped int) string {
	if dropped == 0 {
		return detail
	}
	return fmt.Sprintf("%s; %d more refusals from this address not logged (rate-limited)", detail, dropped)
}

// validTicket checks a download ticket and that the token that minted
// it may still download: a ticket dies with its token (revoked, expired,
// or lowered below operator), not only at its own expiry.
func (s *Server) validTicket(t string, now time.Time) (ticketClaims, error) {
	c, err := s.checkTicket(t, now)
	if err != nil {
		return c, err
	}
	if c.Who == LegacyTokenName || s.tokens == nil {
		return c, nil // the api-token lives as long as the process and its tickets
	}
	tok, ok := s.tokens.current(c.Who)
	need := routeRole("POST /api/v1/downloads")
	switch {
	case !ok:
		return c, fmt.Errorf("%w: token %q that asked for it was revoked", ErrTicket, c.Who)
	case tok.Expired(now):
		return c, fmt.Errorf("%w: token %q that asked for it has expired", ErrTicket, c.Who)
	case tok.Role < need:
		return c, fmt.Errorf("%w: token %q that asked for it is now %s (downloads need %s)", ErrTicket, c.Who, tok.Role, need)
	}
	return c, nil
}

// Longest string field of an audit line (a path, a VM name); longer ones
// are cut and marked.
const auditMaxField = 1024

// auditClean makes a string of a request safe to print in `cairn audit`
// and on a terminal: control characters (newline, tab, escape, ...),
// Unicode line separators and bidirectional overrides become \x.. or
// \u.... escapes, invalid UTF-8 becomes \x.., and it is cut at
// auditMaxField bytes. A VM name, a path or a URL cannot forge a line.
func auditClean(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || unsafeRune(r) {
			clean = false
			break
		}
	}
	if clean && len(s) <= auditMaxField {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if b.Len() >= auditMaxField {
			b.WriteString("...")
			break
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r < 0x80 && unsafeRune(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' ||
		(r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069') || r == '\u200e' || r == '\u200f'
}

// clean returns e with every string field cleaned by auditClean.
func (e AuditEvent) clean() AuditEvent {
	for _, f := range []*string{&e.Kind, &e.Token, &e.Role, &e.Remote, &e.Method, &e.Route, &e.VM, &e.Point, &e.FS, &e.Path, &e.Job, &e.Detail} {
		*f = auditClean(*f)
	}
	return e
}

// setSecurityHeaders sets the headers every answer carries (console.go
// explains them), the guard's refusals included.
func setSecurityHeaders(h http.Header, path string) {
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	if strings.HasPrefix(path, "/ui/") {
		h.Set("Content-Security-Policy", ConsoleCSP)
		h.Set("Cache-Control", "no-cache")
	} else {
		// sandbox: were a download or an answer ever rendered (a
		// browser ignoring attachment), it runs in an opaque origin
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; sandbox")
		h.Set("Cache-Control", "no-store")
	}
}

// auditPath is a refused request's path as the audit log writes it: a
// download URL's ticket (a POST or PUT to it, refused for want of a
// token) becomes {ticket}, so that a valid ticket is never written.
func auditPath(p string) string {
	if rest, ok := strings.CutPrefix(p, "/api/v1/download/"); ok && rest != "" {
		return "/api/v1/download/{ticket}"
	}
	return p
}
