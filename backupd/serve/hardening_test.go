package serve

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode"
)

// TestAdversarialAPI attacks a real cairn serve over a point imported
// from a real ext4 image (docs/security.md, Threats): tickets outliving
// their token, content hashes for viewers, forged audit lines, refusals
// without security headers, and a flood of bad tokens rotating the audit
// log.
func TestAdversarialAPI(t *testing.T) {
	a, _ := startBrowseServer(t)
	now := time.Now()
	raw := func(method, path, body string, hdr map[string]string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, a.base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if method == http.MethodPost {
			req.Header.Set("Content-Type", "application/json")
		}
		for k, v := range hdr {
			if k == "Host" {
				req.Host = v
			} else {
				req.Header.Set(k, v)
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	add := func(name string, role Role) string {
		t.Helper()
		s, err := AddToken(a.repo, name, role, 0, now)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	_, fsBody := raw("GET", "/api/v1/points/web-1/latest/filesystems", "", bearer(a.token))
	var fsr FilesystemsResponse
	if err := json.Unmarshal([]byte(fsBody), &fsr); err != nil || len(fsr.Filesystems) == 0 {
		t.Fatalf("filesystems: %v %s", err, fsBody)
	}
	fsName := fsr.Filesystems[0].Name
	mint := func(tok, path string) string {
		t.Helper()
		resp, body := raw("POST", "/api/v1/downloads", `{"vm":"web-1","fs":"`+fsName+`","path":"`+path+`"}`, bearer(tok))
		var tk DownloadTicket
		if resp.StatusCode != http.StatusCreated || json.Unmarshal([]byte(body), &tk) != nil {
			t.Fatalf("mint %s: %d %s", path, resp.StatusCode, body)
		}
		return tk.URL
	}

	t.Run("ticket dies with its token", func(t *testing.T) {
		leaver := add("leaver", RoleOperator)
		kept, gone := mint(leaver, "/etc/shadow"), mint(leaver, "/etc/hosts")
		if resp, body := raw("GET", kept, "", nil); resp.StatusCode != 200 || !strings.HasPrefix(body, "root:") {
			t.Fatalf("ticket of a valid token: %d %q", resp.StatusCode, body)
		}
		if err := RevokeToken(a.repo, "leaver"); err != nil {
			t.Fatal(err)
		}
		for _, u := range []string{kept, gone} {
			if resp, body := raw("GET", u, "", nil); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "revoked") {
				t.Errorf("ticket of a revoked token: %d %q, want 403 naming the revocation", resp.StatusCode, body)
			}
		}
		// the same name again, now a viewer: its old tickets stay dead
		ops := add("demoted", RoleOperator)
		u := mint(ops, "/etc/hosts")
		if err := RevokeToken(a.repo, "demoted"); err != nil {
			t.Fatal(err)
		}
		add("demoted", RoleViewer)
		if resp, body := raw("GET", u, "", nil); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "viewer") {
			t.Errorf("ticket of a token now a viewer: %d %q, want 403", resp.StatusCode, body)
		}
		// the api-token's tickets still work
		if resp, _ := raw("GET", mint(a.token, "/etc/hosts"), "", nil); resp.StatusCode != 200 {
			t.Errorf("ticket of the api-token: %d", resp.StatusCode)
		}
	})

	t.Run("viewer sees no content hashes", func(t *testing.T) {
		desk := add("desk", RoleViewer)
		for _, tc := range []struct {
			tok  string
			want bool
		}{{desk, false}, {a.token, true}} {
			resp, body := raw("GET", "/api/v1/vms/web-1/history?path=/etc/shadow", "", bearer(tc.tok))
			if resp.StatusCode != 200 {
				t.Fatalf("history: %d %s", resp.StatusCode, body)
			}
			if got := strings.Contains(body, `"sha256"`); got != tc.want {
				t.Errorf("history (admin %v) holds a sha256: %v, want %v: %s", tc.want, got, tc.want, body)
			}
		}
	})

	t.Run("security headers on every answer", func(t *testing.T) {
		for name, tc := range map[string]struct {
			path string
			hdr  map[string]string
			code int
		}{
			"wrong host":   {"/api/v1/status", map[string]string{"Host": "evil.example"}, http.StatusMisdirectedRequest},
			"cross origin": {"/api/v1/status", map[string]string{"Origin": "http://evil.example"}, http.StatusForbidden},
			"no token":     {"/api/v1/status", nil, http.StatusUnauthorized},
			"download":     {mint(a.token, "/etc/shadow"), nil, http.StatusOK},
		} {
			resp, _ := raw("GET", tc.path, "", tc.hdr)
			h := resp.Header
			if resp.StatusCode != tc.code || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" ||
				!strings.Contains(h.Get("Content-Security-Policy"), "sandbox") || h.Get("Cache-Control") != "no-store" {
				t.Errorf("%s: %d (want %d), headers %v", name, resp.StatusCode, tc.code, h)
			}
			if name == "download" && (!strings.HasPrefix(h.Get("Content-Disposition"), "attachment") || h.Get("Content-Type") != "application/octet-stream") {
				t.Errorf("download: %v", h)
			}
		}
	})

	t.Run("no ticket in the audit log", func(t *testing.T) {
		u := mint(a.token, "/etc/hosts")
		for _, m := range []string{"POST", "PUT", "DELETE"} {
			if resp, body := raw(m, u, "{}", nil); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s of a download URL without a token: %d %s", m, resp.StatusCode, body)
			}
		}
		ticket := strings.TrimPrefix(u, "/api/v1/download/")
		if b, err := os.ReadFile(filepath.Join(a.repo, AuditFileName)); err != nil || strings.Contains(string(b), ticket[:40]) {
			t.Errorf("the audit log holds a ticket (%v):\n%s", err, b)
		}
	})

	t.Run("audit lines cannot be forged", func(t *testing.T) {
		fake := "2026-01-01 00:00:00  request  boss  admin"
		raw("GET", "/api/v1/x%0A"+strings.ReplaceAll(fake, " ", "%20")+"%1B%5B2J", "", bearer("wrong"))
		desk := add("desk2", RoleViewer)
		raw("POST", "/api/v1/restores", `{"vm":"a\n`+fake+`\u001b[2J\u202e","replace":true}`, bearer(desk))
		events, skipped, err := ReadAudit(a.repo, time.Time{})
		if err != nil || skipped != 0 {
			t.Fatalf("ReadAudit: %v, %d skipped", err, skipped)
		}
		seen := 0
		for _, e := range events {
			for _, f := range []string{e.Token, e.Role, e.Remote, e.Method, e.Route, e.VM, e.Point, e.FS, e.Path, e.Job, e.Detail} {
				if strings.Contains(f, "boss") {
					seen++
				}
				if strings.ContainsFunc(f, func(r rune) bool { return unicode.IsControl(r) || r == '\u202e' }) {
					t.Errorf("audit field %q holds a control character: %+v", f, e)
				}
			}
		}
		if seen != 2 {
			t.Errorf("the two forged requests are in %d audit fields, want 2 (escaped): %+v", seen, events)
		}
	})

	t.Run("refusals by role limited per token", func(t *testing.T) {
		pest := add("pest", RoleViewer)
		before, _, _ := ReadAudit(a.repo, time.Time{})
		start := time.Now()
		limited := 0
		const n = 60
		for range n {
			resp, body := raw("POST", "/api/v1/restores", `{"vm":"web-1","replace":true}`, bearer(pest))
			switch resp.StatusCode {
			case http.StatusTooManyRequests:
				limited++
			case http.StatusForbidden:
			default:
				t.Fatalf("viewer's restore: %d %s", resp.StatusCode, body)
			}
		}
		after, _, _ := ReadAudit(a.repo, time.Time{})
		bound := failBurst + int(time.Since(start)/failEvery) + 1
		if got := len(after) - len(before); got > bound || limited < n-bound {
			t.Errorf("%d requests beyond a viewer's role: %d audit lines (want at most %d), %d answered 429", n, got, bound, limited)
		}
		if resp, _ := raw("GET", "/api/v1/status", "", bearer(pest)); resp.StatusCode != 200 {
			t.Errorf("the viewer's own routes after: %d", resp.StatusCode)
		}
	})

	// last: it spends this client's refusals
	t.Run("refusals limited per client", func(t *testing.T) {
		before, _, _ := ReadAudit(a.repo, time.Time{})
		start := time.Now()
		limited := 0
		const n = 200
		for i := range n {
			hdr := bearer("not-a-token")
			path := "/api/v1/status"
			if i%2 == 1 {
				hdr, path = nil, "/api/v1/download/eyJ2bSI6IngifQ.AAAA"
			}
			resp, body := raw("GET", path, "", hdr)
			switch resp.StatusCode {
			case http.StatusTooManyRequests:
				limited++
				if resp.Header.Get("Retry-After") == "" {
					t.Fatalf("429 without Retry-After: %s", body)
				}
			case http.StatusUnauthorized, http.StatusForbidden:
			default:
				t.Fatalf("bad credential %d: %d %s", i, resp.StatusCode, body)
			}
		}
		elapsed := time.Since(start)
		after, _, _ := ReadAudit(a.repo, time.Time{})
		// audited: the burst and what refilled while the loop ran
		bound := failBurst + int(elapsed/failEvery) + 1
		if got := len(after) - len(before); got > bound || limited < n-bound {
			t.Errorf("%d bad credentials: %d audit lines (want at most %d), %d answered 429", n, got, bound, limited)
		}
		// a valid token from the same address is still served
		if resp, body := raw("GET", "/api/v1/status", "", bearer(a.token)); resp.StatusCode != 200 {
			t.Errorf("valid token after the flood: %d %s", resp.StatusCode, body)
		}
	})
}

// TestFailLimiter: the refusals of one client are bounded, refill with
// time, do not touch other clients, and the next audited one counts those
// left out; the clients tracked are bounded.
func TestFailLimiter(t *testing.T) {
	l := newFailLimiter()
	t0 := time.Unix(1_000_000, 0)
	for i := range failBurst {
		if ok, _, _ := l.refused("10.0.0.1:1234", t0); !ok {
			t.Fatalf("refusal %d of the burst not allowed", i)
		}
	}
	for i := range 5 {
		if ok, _, wait := l.refused("10.0.0.1:999", t0); ok || wait <= 0 {
			t.Fatalf("refusal %d past the burst: ok %v wait %v", i, ok, wait)
		}
	}
	if ok, _, _ := l.refused("10.0.0.2:1", t0); !ok {
		t.Error("another client limited by the first")
	}
	if ok, dropped, _ := l.refused("10.0.0.1:1", t0.Add(failEvery)); !ok || dropped != 5 {
		t.Errorf("after %v: ok %v dropped %d, want true 5", failEvery, ok, dropped)
	}
	// one IPv6 /64 is one client
	for range failBurst {
		l.refused("[2001:db8::1]:1", t0)
	}
	if ok, _, _ := l.refused("[2001:db8::ffff]:1", t0); ok {
		t.Error("another address of the same /64 not limited")
	}
	// many clients: the map stays bounded
	for i := range failClients * 2 {
		l.refused(fmt.Sprintf("10.%d.%d.%d:1", i>>16&255, i>>8&255, i&255), t0)
	}
	if len(l.clients) > failClients+1 {
		t.Errorf("%d clients tracked, want at most %d", len(l.clients), failClients+1)
	}
}

// TestAuditClean: control characters, line separators and bidi
// overrides are escaped, long fields cut, plain text kept.
func TestAuditClean(t *testing.T) {
	for in, want := range map[string]string{
		"web-1":           "web-1",
		"café/notes.txt":  "café/notes.txt",
		"a\nb":            `a\x0ab`,
		"\x1b[2J":         `\x1b[2J`,
		"x\u202ey":        `x\u202ey`,
		"x\u2028y":        `x\u2028y`,
		"bad\xffutf8":     `bad\xffutf8`,
		"tab\there\r\x00": `tab\x09here\x0d\x00`,
	} {
		if got := auditClean(in); got != want {
			t.Errorf("auditClean(%q) = %q, want %q", in, got, want)
		}
	}
	if got := auditClean(strings.Repeat("a", 5000)); len(got) > auditMaxField+3 || !strings.HasSuffix(got, "...") {
		t.Errorf("a long field: %d bytes", len(got))
	}
}

// TestClientConnLimit: over real TCP, a client holding
// MaxConnsPerClient connections gets its next ones closed at once, while
// another address is still accepted and a slot given back is reused.
func TestClientConnLimit(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := newClientConnListener(inner, 4)
	defer ln.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func(src string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	var held []net.Conn
	for range 4 {
		dial("127.0.0.2")
		held = append(held, <-accepted)
	}
	extra := dial("127.0.0.2")
	extra.SetReadDeadline(time.Now().Add(10 * time.Second)) // against a hang only
	if n, err := extra.Read(make([]byte, 1)); n != 0 || !(errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
		t.Errorf("a 5th connection of one client: read %d, %v; want it closed", n, err)
	}
	dial("127.0.0.3")
	if c := <-accepted; c.RemoteAddr().(*net.TCPAddr).IP.String() != "127.0.0.3" {
		t.Errorf("accepted %v, want the other client", c.RemoteAddr())
	}
	held[0].Close()
	dial("127.0.0.2")
	if c := <-accepted; c.RemoteAddr().(*net.TCPAddr).IP.String() != "127.0.0.2" {
		t.Errorf("accepted %v after a slot was given back", c.RemoteAddr())
	}
}
