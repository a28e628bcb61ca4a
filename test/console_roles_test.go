package test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd/serve"
)

// TestConsoleRoles: named tokens made with the real `cairn serve token
// add NAME --role ROLE` while cairn serve runs; the web console in a
// real headless Chromium offers a viewer no download, backup or restore
// (and names the token and role), an operator downloads but restores no
// VM; `cairn serve token list` shows the tokens with their last use,
// `cairn audit` lists the refusals without secrets; a revoked token is
// refused at once.
func TestConsoleRoles(t *testing.T) {
	chromium := requireChromium(t)
	f := buildHistoryFixture(t, false)
	bin := buildCairn(t)
	api, cfgFile, _ := consoleServe(t, bin, f.repo)
	// the flags after the name, as the docs write it; --config names the repository
	viewer := strings.TrimSpace(mustCairn(t, "serve", "token", "add", "desk", "--role", "viewer", "--expires", "30d", "--config", cfgFile))
	operator := strings.TrimSpace(mustCairn(t, "--repo", f.repo, "serve", "token", "add", "ops", "--role", "operator"))
	if len(viewer) != 64 || len(operator) != 64 || viewer == operator {
		t.Fatalf("token add printed %q and %q, want two secrets of 64 hex digits", viewer, operator)
	}
	if res := runCairn(t, nil, "--repo", f.repo, "serve", "token", "add", "x", "--role", "root"); res.code == 0 || !strings.Contains(res.stderr, "viewer, operator or admin") {
		t.Errorf("token add --role root: exit %d: %s", res.code, res.stderr)
	}

	render := consoleRenderer(chromium, api.base)
	point := "/point?vm=u&point=latest"
	files := "/files?" + url.Values{"vm": {"u"}, "point": {f.ids[3]}, "fs": {"sda/whole"}, "path": {"/etc"}}.Encode()
	vm := "/vm?name=u"
	for _, tc := range []struct {
		name, tok              string
		want, absent           []string
		filesWant, filesAbsent []string
	}{
		{"viewer", viewer, []string{"Log out desk (viewer)", "needs an admin token"}, []string{"Restore as a new VM"},
			[]string{">app.conf<"}, []string{">download<"}},
		{"operator", operator, []string{"Log out ops (operator)", "needs an admin token"}, []string{"Restore as a new VM"},
			[]string{">app.conf<", ">download<"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			login := "token=" + url.QueryEscape(tc.tok)
			dom := render(t, login+"&next="+url.QueryEscape(point))
			for _, w := range tc.want {
				if !strings.Contains(dom, w) {
					t.Errorf("the point's page lacks %q:\n%s", w, dom)
				}
			}
			for _, w := range tc.absent {
				if strings.Contains(dom, w) {
					t.Errorf("the point's page offers %q:\n%s", w, dom)
				}
			}
			dom = render(t, login+"&next="+url.QueryEscape(files))
			for _, w := range tc.filesWant {
				if !strings.Contains(dom, w) {
					t.Errorf("the listing lacks %q:\n%s", w, dom)
				}
			}
			for _, w := range tc.filesAbsent {
				if strings.Contains(dom, w) {
					t.Errorf("the listing offers %q:\n%s", w, dom)
				}
			}
			dom = render(t, login+"&next="+url.QueryEscape(vm))
			if has := strings.Contains(dom, "Back up now"); has != (tc.name == "operator") {
				t.Errorf("the VM's page offers \"Back up now\": %v:\n%s", has, dom)
			}
		})
	}

	// what the console hides, the API refuses; the refusal is audited
	code := rolesPost(t, api.base, viewer, "/api/v1/downloads", `{"vm":"u","point":"latest","fs":"sda/whole","path":"/etc/app.conf"}`)
	if code != 403 {
		t.Errorf("viewer's download ticket: %d, want 403", code)
	}
	if out := mustCairn(t, "--repo", f.repo, "serve", "token", "list"); !strings.Contains(out, "desk") || !strings.Contains(out, "viewer") ||
		!strings.Contains(out, "api-token") || strings.Contains(out, viewer) {
		t.Errorf("token list:\n%s", out)
	}
	mustCairn(t, "--repo", f.repo, "serve", "token", "revoke", "ops")
	if code := rolesPost(t, api.base, operator, "/api/v1/verify", `{}`); code != 401 {
		t.Errorf("revoked operator: %d, want 401", code)
	}
	out := mustCairn(t, "--repo", f.repo, "audit", "--json", "--since", "1h")
	var denied, revoked bool
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var e serve.AuditEvent
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("audit --json line %q: %v", l, err)
		}
		denied = denied || (e.Kind == serve.AuditDenied && e.Token == "desk" && e.Role == "viewer" && e.Path == "/etc/app.conf" && e.Status == 403)
		revoked = revoked || (e.Kind == serve.AuditAuth && e.Route == "/api/v1/verify" && e.Status == 401)
	}
	if !denied || !revoked || strings.Contains(out, viewer) || strings.Contains(out, operator) {
		t.Errorf("audit --json (denied %v, revoked %v):\n%s", denied, revoked, out)
	}
	if out := mustCairn(t, "--repo", f.repo, "audit"); !strings.Contains(out, "denied") || !strings.Contains(out, "POST /api/v1/downloads") {
		t.Errorf("audit:\n%s", out)
	}
	// the api-token still works for cairn status (backward compatibility)
	mustCairn(t, "--repo", f.repo, "status")
}

// rolesPost POSTs body to path with the bearer token tok; it returns the status.
func rolesPost(t *testing.T, base, tok, path, body string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
