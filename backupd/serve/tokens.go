package serve

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Role is what a token may do through the API (docs/security.md, Roles):
// a viewer reads state and file listings, an operator also starts backups
// and verifies and downloads guest files, an admin may do everything
// (restore whole VMs). Roles are ordered: a higher role includes the
// lower ones.
type Role int

// The roles, lowest first. RolePublic is the "role" of routes that need
// no token at all (/healthz, the console's static pages, ticket
// downloads, which carry their own signed ticket).
const (
	RolePublic Role = iota
	RoleViewer
	RoleOperator
	RoleAdmin
)

func (r Role) String() string {
	switch r {
	case RolePublic:
		return "public"
	case RoleViewer:
		return "viewer"
	case RoleOperator:
		return "operator"
	case RoleAdmin:
		return "admin"
	}
	return "role(" + strconv.Itoa(int(r)) + ")"
}

// MarshalText writes the role's name.
func (r Role) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads a role's name (viewer, operator, admin).
func (r *Role) UnmarshalText(b []byte) error {
	v, err := ParseRole(string(b))
	*r = v
	return err
}

// ErrRole is a role name that is not viewer, operator or admin.
var ErrRole = errors.New("unknown role")

// ParseRole reads viewer, operator or admin.
func ParseRole(s string) (Role, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "viewer":
		return RoleViewer, nil
	case "operator":
		return RoleOperator, nil
	case "admin":
		return RoleAdmin, nil
	}
	return RolePublic, fmt.Errorf("%w %q: use viewer, operator or admin", ErrRole, s)
}

// TokensFileName holds the named API tokens of the repository (mode
// 0600): name, role, dates and the SHA-256 of each secret, never the
// secret itself. `cairn serve token add/revoke` write it; cairn serve
// rereads it when it changes.
const TokensFileName = "api-tokens.json"

// tokensUsedFileName records when cairn serve last accepted each named
// token (written by serve at most once a minute per token).
const tokensUsedFileName = "api-tokens-used.json"

// LegacyTokenName is the name the audit log and /api/v1/whoami give the
// repository's api-token (an admin token).
const LegacyTokenName = TokenFileName

// Token is one named API token.
type Token struct {
	Name    string    `json:"name"`
	Role    Role      `json:"role"`
	SHA256  string    `json:"sha256"` // hex SHA-256 of the secret
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires,omitzero"`
	// LastUsed is filled by ListTokens from the server's record.
	LastUsed time.Time `json:"last_used,omitzero"`
}

// Expired reports whether the token has expired at now.
func (t Token) Expired(now time.Time) bool { return !t.Expires.IsZero() && !now.Before(t.Expires) }

type tokensFile struct {
	Tokens []Token `json:"tokens"`
}

// Errors of the token commands.
var (
	ErrTokenExists  = errors.New("a token of that name exists")
	ErrNoSuchToken  = errors.New("no token of that name")
	ErrTokenName    = errors.New("bad token name")
	ErrTokensFile   = errors.New("damaged token file")
	tokenNameRegexp = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)
)

func hashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

func readTokensFile(path string) ([]Token, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var f tokensFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w: %v (restore it from a copy, or delete it and add the tokens again)", path, ErrTokensFile, err)
	}
	for _, t := range f.Tokens {
		if len(t.SHA256) != 64 || t.Role < RoleViewer || t.Role > RoleAdmin {
			return nil, fmt.Errorf("%s: %w: token %q has no valid hash or role (revoke it and add it again)", path, ErrTokensFile, t.Name)
		}
	}
	return f.Tokens, nil
}

// editTokens changes the token file of repoDir under an exclusive lock
// (two `cairn serve token` commands at once do not lose a change).
func editTokens(repoDir string, edit func([]Token) ([]Token, error)) error {
	path := filepath.Join(repoDir, TokensFileName)
	if _, err := os.Stat(filepath.Join(repoDir, "cairn.json")); err != nil {
		return fmt.Errorf("%s is not a cairn repository (%v): give the repository with --repo DIR or --config FILE", repoDir, err)
	}
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("lock the token file: %w (run as the repository's owner)", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock the token file: %w", err)
	}
	toks, err := readTokensFile(path)
	if err != nil {
		return err
	}
	toks, err = edit(toks)
	if err != nil {
		return err
	}
	data, err := json.MarshalIndent(tokensFile{Tokens: toks}, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(path, append(data, '\n')); err != nil {
		return err
	}
	// root editing another user's repository: the files stay the owner's,
	// or the owner's cairn serve could not read them
	if fi, err := os.Stat(repoDir); err == nil && os.Geteuid() == 0 {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
			for _, f := range []string{path, path + ".lock"} {
				if err := os.Chown(f, int(st.Uid), int(st.Gid)); err != nil {
					return fmt.Errorf("give %s to the repository's owner: %w", f, err)
				}
			}
		}
	}
	return nil
}

// AddToken makes a token called name with role in the repository repoDir,
// valid for ttl (0: no expiry), and returns its secret: 64 hex digits,
// shown only now (the repository keeps its SHA-256).
func AddToken(repoDir, name string, role Role, ttl time.Duration, now time.Time) (string, error) {
	if !tokenNameRegexp.MatchString(name) || name == LegacyTokenName || name == "help" || name == "h" {
		return "", fmt.Errorf("%w %q: use 1 to 64 letters, digits, '.', '_', '@' or '-' (not %q, help or h)", ErrTokenName, name, LegacyTokenName)
	}
	if role < RoleViewer || role > RoleAdmin {
		return "", fmt.Errorf("%w: use viewer, operator or admin", ErrRole)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	secret := hex.EncodeToString(b[:])
	err := editTokens(repoDir, func(toks []Token) ([]Token, error) {
		for _, t := range toks {
			if t.Name == name {
				return nil, fmt.Errorf("%w: %q (revoke it first: cairn serve token revoke %s)", ErrTokenExists, name, name)
			}
		}
		t := Token{Name: name, Role: role, SHA256: hashSecret(secret), Created: now.UTC().Truncate(time.Second)}
		if ttl > 0 {
			t.Expires = t.Created.Add(ttl)
		}
		return append(toks, t), nil
	})
	if err != nil {
		return "", err
	}
	return secret, nil
}

// RevokeToken removes the token called name; a running cairn serve
// refuses it from its next request on.
func RevokeToken(repoDir, name string) error {
	return editTokens(repoDir, func(toks []Token) ([]Token, error) {
		i := slices.IndexFunc(toks, func(t Token) bool { return t.Name == name })
		if i < 0 {
			names := make([]string, 0, len(toks))
			for _, t := range toks {
				names = append(names, t.Name)
			}
			return nil, fmt.Errorf("%w: %q (tokens: %s)", ErrNoSuchToken, name, strings.Join(names, ", "))
		}
		return slices.Delete(toks, i, i+1), nil
	})
}

// ListTokens returns the named tokens of repoDir with their last use (as
// recorded by cairn serve), in the file's order.
func ListTokens(repoDir string) ([]Token, error) {
	toks, err := readTokensFile(filepath.Join(repoDir, TokensFileName))
	if err != nil {
		return nil, err
	}
	used := readTokensUsed(repoDir)
	for i := range toks {
		toks[i].LastUsed = used[toks[i].Name]
	}
	return toks, nil
}

func readTokensUsed(repoDir string) map[string]time.Time {
	used := map[string]time.Time{}
	if data, err := os.ReadFile(filepath.Join(repoDir, tokensUsedFileName)); err == nil {
		_ = json.Unmarshal(data, &used) // a damaged record only loses "last used"
	}
	return used
}

// Identity is who sent a request: a token's name and role.
type Identity struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
}

// tokenStore checks bearer tokens against the repository's api-token
// (admin) and its named tokens, rereading the token file when it changes
// (a stat per request: inode, size and time; the file is replaced by a
// rename on every change).
type tokenStore struct {
	dir    string
	legacy string // the api-token's secret
	log    *slog.Logger

	mu     sync.Mutex
	stamp  string           // identity of the file last read
	byHash map[string]Token // SHA-256 hex → token
	used   map[string]time.Time
	saved  map[string]time.Time // when used was last written, per token
}

func newTokenStore(repoDir, legacy string, log *slog.Logger) *tokenStore {
	return &tokenStore{dir: repoDir, legacy: legacy, log: log, used: readTokensUsed(repoDir), saved: map[string]time.Time{}}
}

func fileStamp(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return "none"
	}
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	return fmt.Sprintf("%d/%d/%d", ino, fi.Size(), fi.ModTime().UnixNano())
}

// errTokenExpired and errTokenUnknown say why a token was refused (the
// audit log records it; the client only learns "missing or wrong").
var (
	errTokenExpired = errors.New("token expired")
	errTokenUnknown = errors.New("unknown token")
)

// authenticate returns who holds secret, or why it is refused.
func (ts *tokenStore) authenticate(secret string, now time.Time) (Identity, error) {
	secret = strings.TrimSpace(secret)
	if secret == "" {
		return Identity{}, errTokenUnknown
	}
	if ts.legacy != "" && constantTimeEqual(secret, ts.legacy) {
		return Identity{Name: LegacyTokenName, Role: RoleAdmin}, nil
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.reloadLocked()
	t, ok := ts.byHash[hashSecret(secret)]
	if !ok {
		return Identity{}, errTokenUnknown
	}
	if t.Expired(now) {
		return Identity{Name: t.Name, Role: t.Role}, fmt.Errorf("%w at %s", errTokenExpired, t.Expires.Format(time.RFC3339))
	}
	ts.used[t.Name] = now.UTC().Truncate(time.Second)
	if now.Sub(ts.saved[t.Name]) >= time.Minute {
		ts.saved[t.Name] = now
		if data, err := json.Marshal(ts.used); err == nil {
			if err := writeFileAtomic(filepath.Join(ts.dir, tokensUsedFileName), data); err != nil {
				ts.log.Warn("cannot record the last use of API tokens", "error", err)
			}
		}
	}
	return Identity{Name: t.Name, Role: t.Role}, nil
}

// reloadLocked rereads the token file when it changed (ts.mu held).
func (ts *tokenStore) reloadLocked() {
	path := filepath.Join(ts.dir, TokensFileName)
	if st := fileStamp(path); st != ts.stamp {
		toks, err := readTokensFile(path)
		if err != nil {
			// fail closed: no named token works until the file is fixed
			ts.log.Error("named API tokens refused until the token file is fixed", "error", err)
			toks = nil
		}
		ts.byHash = make(map[string]Token, len(toks))
		for _, t := range toks {
			ts.byHash[t.SHA256] = t
		}
		ts.stamp = st
	}
}

// current returns the token called name as the token file has it now
// (reread when it changed): false when it was revoked.
func (ts *tokenStore) current(name string) (Token, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.reloadLocked()
	for _, t := range ts.byHash {
		if t.Name == name {
			return t, true
		}
	}
	return Token{}, false
}

// roleOf returns the role of the token called name as last read ("" when
// there is none now, e.g. revoked since).
func (ts *tokenStore) roleOf(name string) string {
	if ts == nil || name == "" {
		return ""
	}
	if name == LegacyTokenName {
		return RoleAdmin.String()
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for _, t := range ts.byHash {
		if t.Name == name {
			return t.Role.String()
		}
	}
	return ""
}

// ParseTTL reads a token lifetime: a number of days ("90d"), weeks
// ("2w") or a Go duration ("12h").
func ParseTTL(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" || s == "never" {
		return 0, nil
	}
	unit := map[byte]time.Duration{'d': 24 * time.Hour, 'w': 7 * 24 * time.Hour}
	if u, ok := unit[s[len(s)-1]]; ok {
		n, err := strconv.Atoi(s[:len(s)-1])
		if err == nil && n > 0 && n < 100000 {
			return time.Duration(n) * u, nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d, nil
	}
	return 0, fmt.Errorf("expiry %q: use days (90d), weeks (2w), hours (12h), or never", s)
}
