package serve

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// TokenFileName is the API token's file in the repository: 64 hex digits
// on one line, mode 0600. cairn serve creates it on its first start;
// `cairn status`, `cairn jobs` and `cairn trigger` read it, so only users
// who can read the repository can use the API (docs/security.md).
const TokenFileName = "api-token"

// ErrNoToken means the repository has no API token yet (no cairn serve
// has started on it).
var ErrNoToken = errors.New("no API token in the repository")

// ReadToken returns the API token of the repository in repoDir.
func ReadToken(repoDir string) (string, error) {
	return readTokenFile(filepath.Join(repoDir, TokenFileName))
}

func readTokenFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%s: %w (cairn serve writes it when it starts)", path, ErrNoToken)
	}
	if err != nil {
		return "", fmt.Errorf("read API token: %w (run as the repository's owner, or give --token-file)", err)
	}
	tok := strings.TrimSpace(string(data))
	if len(tok) < 32 || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("%s: not an API token (want one line of at least 32 characters; delete it and restart cairn serve for a new one)", path)
	}
	return tok, nil
}

// ensureToken returns the repository's API token, creating it (0600,
// never replaced) when there is none.
func ensureToken(repoDir string) (string, error) {
	path := filepath.Join(repoDir, TokenFileName)
	if tok, err := readTokenFile(path); !errors.Is(err, ErrNoToken) {
		if err == nil {
			_ = os.Chmod(path, 0o600)
		}
		return tok, err
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(b[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) { // another server won the race
		return readTokenFile(path)
	}
	if err != nil {
		return "", fmt.Errorf("create API token: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		os.Remove(path)
		return "", fmt.Errorf("write API token: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return "", fmt.Errorf("write API token: %w", err)
	}
	return tok, f.Close()
}

// Limits of the API (see docs/security.md).
const (
	// MaxConns caps the API's open connections, so that no client can
	// take the descriptors the mount needs.
	MaxConns = 128
	// MaxQueuedRequests caps the backups requested through the API that
	// wait to start.
	MaxQueuedRequests = 32
	// postRate and postBurst limit the requests that start a backup (a
	// token bucket); refused and deduplicated requests cost nothing.
	postRate  = 2 // per second
	postBurst = 20
)

// guard wraps the API handler: it answers only Host names of this
// machine (against DNS rebinding), refuses cross-origin browser requests
// and POSTs that are not JSON, and checks the bearer token on everything
// but /healthz. (Requests that would start a backup are rate-limited by
// handleRunNow.)
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setSecurityHeaders(w.Header(), r.URL.Path) // hardening.go: refusals too
		if !s.hostAllowed(r.Host) {
			s.refuse(w, "host", http.StatusMisdirectedRequest, fmt.Errorf("host %q is not a name of this cairn serve (allowed: IP addresses, localhost and the api hosts of the config)", r.Host))
			return
		}
		if o := r.Header.Get("Origin"); o != "" && !sameOrigin(o, r) {
			s.refuse(w, "origin", http.StatusForbidden, fmt.Errorf("cross-origin request from %q refused", o))
			return
		}
		if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" || site == "same-site" {
			s.refuse(w, "origin", http.StatusForbidden, fmt.Errorf("cross-site request refused"))
			return
		}
		if r.URL.Path == "/healthz" || isConsole(r) || isDownload(r) { // console.go, download.go
			next.ServeHTTP(w, r)
			return
		}
		id, err := s.authenticate(r) // access.go
		if err != nil {
			ok, dropped, wait := s.fails.refused(r.RemoteAddr, time.Now()) // hardening.go
			if !ok {
				s.tooManyRefusals(w, wait)
				return
			}
			s.auditRefusedToken(r, id, droppedDetail(err.Error(), dropped))
			w.Header().Set("WWW-Authenticate", `Bearer realm="cairn"`)
			s.refuse(w, "token", http.StatusUnauthorized, fmt.Errorf("missing, wrong, revoked or expired API token: send \"Authorization: Bearer TOKEN\" with the token of %s in the repository or one of cairn serve token add", TokenFileName))
			return
		}
		r = withIdentity(r, id)
		if r.Method == http.MethodPost {
			mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if err != nil || mt != "application/json" {
				s.refuse(w, "content_type", http.StatusUnsupportedMediaType, fmt.Errorf("POST needs Content-Type: application/json"))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) refuse(w http.ResponseWriter, reason string, code int, err error) {
	s.metrics.apiRefused.WithLabelValues(reason).Inc()
	writeError(w, code, err)
}

// hostAllowed reports whether a request's Host header names this server:
// an IP address (DNS rebinding needs a name), localhost, the host of the
// listen address, this machine's host name, or a name of api.hosts.
func (s *Server) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "" {
		return false
	}
	if net.ParseIP(host) != nil || host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	for _, h := range s.hosts {
		if host == h {
			return true
		}
	}
	return false
}

// allowedHosts are the host names (besides IP addresses and localhost)
// the API answers to.
func allowedHosts(cfg *Config) []string {
	var out []string
	if h, _, err := net.SplitHostPort(cfg.Listen); err == nil && h != "" {
		out = append(out, strings.ToLower(h))
	}
	if hn, err := os.Hostname(); err == nil && hn != "" {
		out = append(out, strings.ToLower(hn))
	}
	for _, h := range cfg.API.Hosts {
		out = append(out, strings.ToLower(h))
	}
	return out
}

// sameOrigin reports whether a browser's Origin header is the API's own
// origin (a page served by the API itself: the web console).
func sameOrigin(origin string, r *http.Request) bool {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return strings.EqualFold(origin, scheme+"://"+r.Host)
}

// bucket is a token bucket's state: tokens at last, refilled at rate a
// second up to burst (rateLimiter; failLimiter keeps one per client).
type bucket struct {
	tokens float64
	last   time.Time
}

// level is the bucket's tokens at now.
func (b *bucket) level(now time.Time, rate, burst float64) float64 {
	return min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
}

// take takes a token at now; without one it answers how long until one
// is there.
func (b *bucket) take(now time.Time, rate, burst float64) (ok bool, wait time.Duration) {
	b.tokens, b.last = b.level(now, rate, burst), now
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) / rate * float64(time.Second))
	}
	b.tokens--
	return true, 0
}

// rateLimiter is a token bucket.
type rateLimiter struct {
	mu    sync.Mutex
	rate  float64
	burst float64
	b     bucket
}

func newRateLimiter(rate, burst float64) *rateLimiter {
	return &rateLimiter{rate: rate, burst: burst, b: bucket{tokens: burst, last: time.Now()}}
}

func (l *rateLimiter) allow(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	ok, _ := l.b.take(now, l.rate, l.burst)
	return ok
}

// limitListener accepts at most n connections at once; further clients
// wait in the kernel's backlog (they hold no descriptor of this process).
type limitListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func newLimitListener(l net.Listener, n int) net.Listener {
	return &limitListener{Listener: l, sem: make(chan struct{}, n), done: make(chan struct{})}
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// auditRefusedToken records a refused authentication: never the token,
// only why (missing, unknown, expired) and, for an expired named token,
// its name.
func (s *Server) auditRefusedToken(r *http.Request, id Identity, why string) {
	route := auditPath(r.URL.Path) // hardening.go: never a ticket
	if len(route) > 200 {
		route = route[:200] + "..."
	}
	ev := AuditEvent{Time: time.Now().UTC(), Kind: AuditAuth, Token: id.Name, Remote: r.RemoteAddr, Method: r.Method, Route: route,
		Status: http.StatusUnauthorized, Detail: why}
	if id.Name != "" {
		ev.Role = id.Role.String()
	}
	s.audit.add(ev)
}
