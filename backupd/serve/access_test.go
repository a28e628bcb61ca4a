package serve

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRouteRolesComplete: every route the package registers on its mux
// has a row in routeRoles, and every row names a registered route (a new
// route without a role fails here; at run time it would need admin).
func TestRouteRolesComplete(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	registered := map[string]bool{}
	re := regexp.MustCompile(`mux\.Handle(?:Func)?\("([A-Z]+ [^"]+)"`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			registered[m[1]] = true
			if _, ok := routeRoles[m[1]]; !ok {
				t.Errorf("route %q (%s) has no role in routeRoles (access.go)", m[1], f)
			}
		}
	}
	if len(registered) < 20 {
		t.Fatalf("found only %d routes", len(registered))
	}
	for p := range routeRoles {
		if !registered[p] {
			t.Errorf("routeRoles has %q, which no file registers", p)
		}
	}
}

// TestAPIRoles: through a real cairn serve over a real point, tokens
// added, revoked and expired while it runs: each role against each class
// of route (allowed, or 403 naming the role needed), the api-token as
// admin, refused tokens, whoami, and the audit log's lines for each kind
// of event, without any secret; the files are private.
func TestAPIRoles(t *testing.T) {
	a, _ := startBrowseServer(t)
	now := time.Now()
	// added after the server started: it must see them without a restart
	secrets := map[string]string{}
	for _, tc := range []struct {
		name string
		role Role
	}{{"desk", RoleViewer}, {"ops", RoleOperator}, {"boss", RoleAdmin}, {"leaver", RoleOperator}} {
		s, err := AddToken(a.repo, tc.name, tc.role, 90*24*time.Hour, now)
		if err != nil {
			t.Fatal(err)
		}
		secrets[tc.name] = s
	}
	expired, err := AddToken(a.repo, "old", RoleAdmin, time.Hour, now.Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := AddToken(a.repo, "desk", RoleAdmin, 0, now); err == nil {
		t.Error("AddToken made a second token called desk")
	}
	secrets["api-token"] = a.token

	call := func(method, path, body, tok string) (int, string) {
		t.Helper()
		return a.do(t, method, path, body, map[string]string{"Authorization": "Bearer " + tok})
	}
	mintBody := `{"vm":"web-1","point":"latest","fs":"sda1","path":"/etc/shadow"}`
	// fs names: ask the server
	code, fsBody := call("GET", "/api/v1/points/web-1/latest/filesystems", "", secrets["desk"])
	if code != 200 {
		t.Fatalf("viewer: filesystems: %d %s", code, fsBody)
	}
	var fsr FilesystemsResponse
	if err := json.Unmarshal([]byte(fsBody), &fsr); err != nil || len(fsr.Filesystems) == 0 {
		t.Fatalf("filesystems: %v %s", err, fsBody)
	}
	fss := fsr.Filesystems
	mintBody = strings.Replace(mintBody, "sda1", fss[0].Name, 1)

	type route struct {
		class        string
		method, path string
		body         string
		need         Role
	}
	routes := []route{
		{"status", "GET", "/api/v1/status", "", RoleViewer},
		{"metrics", "GET", "/metrics", "", RoleViewer},
		{"points", "GET", "/api/v1/points", "", RoleViewer},
		{"jobs", "GET", "/api/v1/jobs", "", RoleViewer},
		{"file listing", "GET", "/api/v1/points/web-1/latest/files?fs=" + fss[0].Name + "&path=/etc", "", RoleViewer},
		{"file versions", "GET", "/api/v1/vms/web-1/history?path=/etc/hosts", "", RoleViewer},
		{"trigger backup", "POST", "/api/v1/jobs", `{"vm":"web-1"}`, RoleOperator},
		{"verify", "POST", "/api/v1/verify", `{}`, RoleOperator},
		{"download ticket", "POST", "/api/v1/downloads", mintBody, RoleOperator},
		{"restore vm", "POST", "/api/v1/restores", `{"vm":"web-1","replace":true}`, RoleAdmin},
	}
	roles := map[string]Role{"desk": RoleViewer, "ops": RoleOperator, "boss": RoleAdmin, "api-token": RoleAdmin}
	for name, role := range roles {
		for _, r := range routes {
			code, body := call(r.method, r.path, r.body, secrets[name])
			byRole := code == http.StatusForbidden && strings.Contains(body, `"role_needed"`)
			switch {
			case code == http.StatusUnauthorized:
				t.Errorf("%s (%s): %s: 401 %s", name, role, r.class, body)
			case role >= r.need && byRole:
				t.Errorf("%s (%s): %s %s refused by role: %s", name, role, r.method, r.path, body)
			case role < r.need && !byRole:
				t.Errorf("%s (%s): %s %s: %d, want 403 by role: %s", name, role, r.method, r.path, code, body)
			case role < r.need:
				var e map[string]string
				if json.Unmarshal([]byte(body), &e) != nil || e["role_needed"] != r.need.String() || e["role"] != role.String() || !strings.Contains(e["error"], r.need.String()) {
					t.Errorf("%s: %s: 403 answer %s, want role_needed %s", name, r.class, body, r.need)
				}
			}
		}
		code, body := call("GET", "/api/v1/whoami", "", secrets[name])
		var who Whoami
		if code != 200 || json.Unmarshal([]byte(body), &who) != nil || who.Name != name || who.Role != role {
			t.Errorf("whoami as %s: %d %s", name, code, body)
		}
		if can := strings.Join(who.May, ","); can != map[Role]string{RoleViewer: "", RoleOperator: "backup,verify,download", RoleAdmin: "backup,verify,download,restore_vm"}[role] {
			t.Errorf("whoami as %s: may %q", name, can)
		}
	}

	// an operator downloads a file; the ticket's download is audited
	// under the operator's name
	code, body := call("POST", "/api/v1/downloads", mintBody, secrets["ops"])
	var tk DownloadTicket
	if code != http.StatusCreated || json.Unmarshal([]byte(body), &tk) != nil {
		t.Fatalf("mint as operator: %d %s", code, body)
	}
	resp, data := a.get(t, tk.URL, "-", nil)
	if resp.StatusCode != 200 || !bytes.HasPrefix(data, []byte("root:")) {
		t.Fatalf("download: %d %q", resp.StatusCode, data)
	}

	// refused: no token, a wrong one, an expired one, a revoked one
	if code, _ := call("GET", "/api/v1/status", "", expired); code != http.StatusUnauthorized {
		t.Errorf("expired token: %d, want 401", code)
	}
	if code, _ := call("GET", "/api/v1/status", "", strings.Repeat("ab", 32)); code != http.StatusUnauthorized {
		t.Errorf("wrong token: %d, want 401", code)
	}
	if code, _ := call("GET", "/api/v1/status", "", secrets["leaver"]); code != 200 {
		t.Errorf("leaver before revoke: %d", code)
	}
	if err := RevokeToken(a.repo, "leaver"); err != nil {
		t.Fatal(err)
	}
	if code, _ := call("GET", "/api/v1/status", "", secrets["leaver"]); code != http.StatusUnauthorized {
		t.Errorf("revoked token: %d, want 401", code)
	}
	if code, _ := call("POST", "/api/v1/jobs", `{"vm":"web-1"}`, secrets["leaver"]); code != http.StatusUnauthorized {
		t.Errorf("revoked token POST: %d, want 401", code)
	}

	// private files
	for _, f := range []string{TokensFileName, AuditFileName, TokenFileName} {
		fi, err := os.Stat(filepath.Join(a.repo, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", f, err, fi.Mode().Perm())
		}
	}
	toks, err := ListTokens(a.repo)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range toks {
		if tok.Name == "desk" && tok.LastUsed.IsZero() {
			t.Errorf("help: no last use recorded: %+v", tok)
		}
		if tok.Name == "leaver" {
			t.Errorf("revoked token still listed: %+v", tok)
		}
	}

	// the audit log: the right lines, no secret anywhere in the repository's access files
	raw, err := os.ReadFile(filepath.Join(a.repo, AuditFileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{AuditFileName, TokensFileName, tokensUsedFileName} {
		b, _ := os.ReadFile(filepath.Join(a.repo, f))
		for name, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds the secret of %s", f, name)
			}
		}
		if bytes.Contains(b, []byte(expired)) || bytes.Contains(b, []byte(strings.TrimPrefix(tk.URL, "/api/v1/download/"))) {
			t.Errorf("%s holds a secret (expired token or download ticket)", f)
		}
	}
	events, skipped, err := ReadAudit(a.repo, time.Time{})
	if err != nil || skipped != 0 {
		t.Fatalf("ReadAudit: %v, %d skipped", err, skipped)
	}
	find := func(what string, ok func(e AuditEvent) bool) {
		t.Helper()
		for _, e := range events {
			if ok(e) {
				if e.Time.IsZero() || !strings.HasPrefix(e.Remote, "127.0.0.1:") || e.Method == "" || e.Route == "" || e.Status == 0 {
					t.Errorf("%s: incomplete line %+v", what, e)
				}
				return
			}
		}
		t.Errorf("no audit line for %s in:\n%s", what, raw)
	}
	find("operator's backup request", func(e AuditEvent) bool {
		return e.Kind == AuditRequest && e.Token == "ops" && e.Role == "operator" && e.Method == "POST" && e.Route == "/api/v1/jobs" && e.VM == "web-1"
	})
	find("admin's restore with replace", func(e AuditEvent) bool {
		return e.Kind == AuditRequest && e.Token == "boss" && e.Route == "/api/v1/restores" && e.VM == "web-1" && strings.Contains(e.Detail, "replace")
	})
	find("viewer refused a restore", func(e AuditEvent) bool {
		return e.Kind == AuditDenied && e.Token == "desk" && e.Role == "viewer" && e.Route == "/api/v1/restores" && e.Status == 403 && e.VM == "web-1"
	})
	find("operator's ticket mint", func(e AuditEvent) bool {
		return e.Kind == AuditRequest && e.Token == "ops" && e.Route == "/api/v1/downloads" && e.Path == "/etc/shadow" && e.Status == 201
	})
	find("operator's download", func(e AuditEvent) bool {
		return e.Kind == AuditDownload && e.Token == "ops" && e.Role == "operator" && e.VM == "web-1" && e.Path == "/etc/shadow" && e.Status == 200 && e.Bytes == int64(len(data)) &&
			e.Route == "/api/v1/download/{ticket}"
	})
	find("expired token", func(e AuditEvent) bool {
		return e.Kind == AuditAuth && e.Token == "old" && e.Status == 401 && strings.Contains(e.Detail, "expired")
	})
	find("revoked token", func(e AuditEvent) bool {
		return e.Kind == AuditAuth && e.Token == "" && e.Status == 401 && e.Method == "POST" && e.Route == "/api/v1/jobs"
	})
	for _, e := range events {
		if e.Method == "GET" && e.Kind == AuditRequest {
			t.Errorf("a plain GET was audited: %+v", e)
		}
	}
}

// TestAuditRotation: the audit log stays within its bound: past max bytes
// it rotates, AuditKeep old files are kept, ReadAudit reads them in order.
func TestAuditRotation(t *testing.T) {
	dir := t.TempDir()
	a := newAuditLog(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	a.max = 2000
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 200 {
		a.add(AuditEvent{Time: start.Add(time.Duration(i) * time.Second), Kind: AuditRequest, Method: "POST", Route: "/api/v1/jobs", VM: "web-1", Status: 202})
	}
	var total int64
	for _, n := range []string{"", ".1", ".2", ".3"} {
		fi, err := os.Stat(filepath.Join(dir, AuditFileName+n))
		if err != nil {
			t.Fatalf("%s%s: %v", AuditFileName, n, err)
		}
		if fi.Size() > a.max || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s%s: %d bytes, mode %v", AuditFileName, n, fi.Size(), fi.Mode().Perm())
		}
		total += fi.Size()
	}
	if _, err := os.Stat(filepath.Join(dir, AuditFileName+".4")); err == nil {
		t.Error("more than AuditKeep rotated files")
	}
	ev, skipped, err := ReadAudit(dir, time.Time{})
	if err != nil || skipped != 0 || len(ev) == 0 || len(ev) >= 200 {
		t.Fatalf("ReadAudit: %d events, %d skipped, %v", len(ev), skipped, err)
	}
	for i := 1; i < len(ev); i++ {
		if !ev[i].Time.After(ev[i-1].Time) {
			t.Fatalf("events out of order at %d: %v then %v", i, ev[i-1].Time, ev[i].Time)
		}
	}
	if last := ev[len(ev)-1].Time; !last.Equal(start.Add(199 * time.Second)) {
		t.Errorf("newest event %v, want the last written", last)
	}
	since := start.Add(190 * time.Second)
	if ev, _, _ := ReadAudit(dir, since); len(ev) != 10 {
		t.Errorf("since: %d events, want 10", len(ev))
	}
}

// TestTokenFile: names and roles are checked, a damaged file is refused
// with the fix, expiry parses.
func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	for _, bad := range []string{"", "api-token", "help", "h", "a b", "-x", strings.Repeat("x", 65)} {
		if _, err := AddToken(dir, bad, RoleViewer, 0, time.Now()); err == nil {
			t.Errorf("AddToken(%q) accepted", bad)
		}
	}
	if _, err := AddToken(dir, "x", RolePublic, 0, time.Now()); err == nil {
		t.Error("AddToken with no role accepted")
	}
	if _, err := AddToken(filepath.Join(dir, "nothere"), "x", RoleViewer, 0, time.Now()); err == nil || !strings.Contains(err.Error(), "not a cairn repository") {
		t.Errorf("AddToken outside a repository: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cairn.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 { // root adds a token to another user's repository: the files stay the owner's
		if err := os.Chown(dir, 1234, 1234); err != nil {
			t.Fatal(err)
		}
		if _, err := AddToken(dir, "x", RoleViewer, 0, time.Now()); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(dir, TokensFileName))
		if err != nil || fi.Sys().(*syscall.Stat_t).Uid != 1234 || fi.Mode().Perm() != 0o600 {
			t.Errorf("token file of another user's repository: %v, %+v", err, fi)
		}
	}
	if err := RevokeToken(dir, "nobody"); err == nil {
		t.Error("RevokeToken of an unknown name succeeded")
	}
	if err := os.WriteFile(filepath.Join(dir, TokensFileName), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ListTokens(dir); err == nil || !strings.Contains(err.Error(), "delete it") {
		t.Errorf("damaged file: %v", err)
	}
	ts := newTokenStore(dir, "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if _, err := ts.authenticate(strings.Repeat("a", 64), time.Now()); err == nil {
		t.Error("a damaged token file let a token in")
	}
	for in, want := range map[string]time.Duration{"90d": 90 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "12h": 12 * time.Hour, "never": 0} {
		if got, err := ParseTTL(in); err != nil || got != want {
			t.Errorf("ParseTTL(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"d", "-3d", "soon", "-1h"} {
		if _, err := ParseTTL(bad); err == nil {
			t.Errorf("ParseTTL(%q) accepted", bad)
		}
	}
}
