package serve

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// routeRoles is the role each route of the API needs (docs/security.md,
// Roles). Every route the mux serves must have a row
// (TestRouteRolesComplete); a route without one needs admin.
//
// A viewer (a help desk) sees state, points, jobs and guest file
// listings (that a file exists, its size and dates) but cannot read a
// file's contents; an operator also starts backups and verifies and
// downloads guest files; only an admin restores whole VMs (new, replace
// or in place).
var routeRoles = map[string]Role{
	"GET /healthz": RolePublic,
	"GET /{$}":     RolePublic, // redirect to the console
	"GET /ui/":     RolePublic, // the console's static files (no data)
	// a ticket download: the ticket (signed, minted by an operator, short
	// lived) is the credential
	"GET /api/v1/download/{ticket}": RolePublic,

	"GET /metrics":                         RoleViewer,
	"GET /api/v1/whoami":                   RoleViewer,
	"GET /api/v1/status":                   RoleViewer,
	"GET /api/v1/vms":                      RoleViewer,
	"GET /api/v1/points":                   RoleViewer,
	"GET /api/v1/points/{vm}/{point}/boot": RoleViewer,
	"GET /api/v1/points/{vm}/{point}/boot/screenshot.png": RoleViewer,
	"GET /api/v1/jobs":                            RoleViewer,
	"GET /api/v1/jobs/wait":                       RoleViewer,
	"GET /api/v1/restores":                        RoleViewer,
	"GET /api/v1/replications":                    RoleViewer,
	"GET /api/v1/remotes/{name}/points":           RoleViewer,
	"GET /api/v1/remotes/{name}/stats":            RoleViewer,
	"GET /api/v1/repository":                      RoleViewer,
	"GET /api/v1/points/{vm}/{point}/filesystems": RoleViewer,
	"GET /api/v1/points/{vm}/{point}/files":       RoleViewer,
	"GET /api/v1/vms/{vm}/history":                RoleViewer,
	"GET /api/v1/points/{vm}/{point}/diff":        RoleViewer, // which files changed, as listings tell

	"POST /api/v1/jobs":      RoleOperator, // start a backup
	"POST /api/v1/verify":    RoleOperator,
	"POST /api/v1/downloads": RoleOperator, // mint a download ticket: read guest files
	"POST /api/v1/acks":      RoleOperator, // acknowledge a suspicious point (retention stops keeping its clean point)

	"POST /api/v1/restores": RoleAdmin, // restore a whole VM (new, replace, in place)
	// instant recovery: run a point as a VM, move it to production, remove it
	"GET /api/v1/instant":               RoleViewer,
	"POST /api/v1/instant":              RoleAdmin,
	"POST /api/v1/instant/{id}/migrate": RoleAdmin,
	"POST /api/v1/instant/{id}/stop":    RoleAdmin,
}

// downloadRoute is the ticket download's pattern (audited as downloads).
const downloadRoute = "GET /api/v1/download/{ticket}"

// refusedTicket starts the detail of an audited download whose ticket
// was refused.
const refusedTicket = "refused ticket: "

// routeRole returns the role pattern needs: its row, or admin.
func routeRole(pattern string) Role {
	if r, ok := routeRoles[pattern]; ok {
		return r
	}
	return RoleAdmin
}

func constantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

type identityKey struct{}

// identityOf returns who sent r (set by the guard), if anyone.
func identityOf(r *http.Request) (Identity, bool) {
	id, ok := r.Context().Value(identityKey{}).(Identity)
	return id, ok
}

func withIdentity(r *http.Request, id Identity) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), identityKey{}, id))
}

// authenticate checks r's bearer token: who sent it, or why not.
func (s *Server) authenticate(r *http.Request) (Identity, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return Identity{}, fmt.Errorf("no bearer token")
	}
	if s.tokens == nil {
		if s.token != "" && constantTimeEqual(strings.TrimSpace(tok), s.token) {
			return Identity{Name: LegacyTokenName, Role: RoleAdmin}, nil
		}
		return Identity{}, errTokenUnknown
	}
	return s.tokens.authenticate(tok, time.Now())
}

// authorize refuses a request whose token's role is below its route's
// (403 naming the role needed) and writes the audit log's lines for
// mutating requests, downloads and refusals; next answers the rest.
func (s *Server) authorize(mux *http.ServeMux, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pattern := mux.Handler(r)
		if pattern == "" { // 404 or 405: next says which
			next.ServeHTTP(w, r)
			return
		}
		need := routeRole(pattern)
		// The guard sets the identity of every request to a route above
		// RolePublic (or refuses it); a request without one did not pass
		// the guard (Handler used bare, in tests), which checks nothing.
		id, guarded := identityOf(r)
		if need > RolePublic && guarded && id.Role < need {
			ok, dropped, wait := s.fails.refused("token "+id.Name, time.Now()) // hardening.go: per token
			if !ok {
				s.tooManyRefusals(w, wait)
				return
			}
			ev := s.auditEvent(r, AuditDenied, id, pattern)
			ev.Status, ev.Detail = http.StatusForbidden, droppedDetail("needs role "+need.String(), dropped)
			s.audit.add(ev)
			s.metrics.apiRefused.WithLabelValues("role").Inc()
			writeJSON(w, http.StatusForbidden, map[string]string{
				"error":       fmt.Sprintf("%s %s needs role %s; token %q has role %s (an admin adds tokens: cairn serve token add NAME --role %s)", r.Method, pattern[strings.IndexByte(pattern, ' ')+1:], need, id.Name, id.Role, need),
				"role_needed": need.String(),
				"role":        id.Role.String(),
			})
			return
		}
		if guarded && id.Role < RoleOperator && hookRedactedRoutes[pattern] {
			redactHooks(next).ServeHTTP(w, r) // redact.go: no hook command lines or output for viewers
			return
		}
		audited := (r.Method != http.MethodGet && r.Method != http.MethodHead) || pattern == downloadRoute
		if !audited {
			next.ServeHTTP(w, r)
			return
		}
		kind := AuditRequest
		if pattern == downloadRoute {
			kind = AuditDownload
		}
		ev := s.auditEvent(r, kind, id, pattern)
		if kind == AuditDownload && strings.HasPrefix(ev.Detail, refusedTicket) {
			ok, dropped, wait := s.fails.refused(r.RemoteAddr, time.Now()) // hardening.go
			if !ok {
				s.tooManyRefusals(w, wait)
				return
			}
			ev.Detail = droppedDetail(ev.Detail, dropped)
		}
		rec := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		ev.Status, ev.Bytes = rec.status, rec.bytes
		if ev.Status == 0 {
			ev.Status = http.StatusOK
		}
		if kind != AuditDownload {
			ev.Bytes = 0
		}
		s.audit.add(ev)
	})
}

// auditEvent starts r's audit line: who, from where, which route and
// target (from a POST's JSON body, which it reads and puts back, or from
// a download's ticket).
func (s *Server) auditEvent(r *http.Request, kind string, id Identity, pattern string) AuditEvent {
	route := pattern[strings.IndexByte(pattern, ' ')+1:] // the mux's pattern without its method
	ev := AuditEvent{Time: time.Now().UTC(), Kind: kind, Token: id.Name, Remote: r.RemoteAddr, Method: r.Method, Route: route}
	if id.Name != "" {
		ev.Role = id.Role.String()
	}
	if pattern == downloadRoute {
		c, err := s.validTicket(strings.TrimPrefix(r.URL.Path, "/api/v1/download/"), time.Now())
		if err != nil {
			ev.Detail = refusedTicket + err.Error()
			return ev
		}
		ev.Token, ev.VM, ev.Point, ev.FS, ev.Path = c.Who, c.VM, c.Point, c.FS, "/"+strings.TrimPrefix(c.Path, "/")
		ev.Role = s.tokens.roleOf(c.Who)
		return ev
	}
	if r.Method != http.MethodPost || r.Body == nil {
		return ev
	}
	head, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16+1))
	r.Body = readCloser{io.MultiReader(bytes.NewReader(head), r.Body), r.Body}
	var t struct {
		VM      string `json:"vm"`
		Point   string `json:"point"`
		FS      string `json:"fs"`
		Path    string `json:"path"`
		Job     string `json:"job"`
		Name    string `json:"name"`
		Replace bool   `json:"replace"`
		InPlace bool   `json:"in_place"`
	}
	if json.Unmarshal(head, &t) == nil {
		ev.VM, ev.Point, ev.FS, ev.Path, ev.Job = t.VM, t.Point, t.FS, t.Path, t.Job
		switch {
		case t.InPlace:
			ev.Detail = "in place"
		case t.Replace:
			ev.Detail = "replace " + cmpOr(t.Name, t.VM)
		case t.Name != "":
			ev.Detail = "as " + t.Name
		}
	}
	return ev
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

type readCloser struct {
	io.Reader
	io.Closer
}

// statusWriter records the status and body size of an answer.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Whoami is GET /api/v1/whoami: the caller's token name and role and
// what that role may do (the console hides the rest).
type Whoami struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
	// May lists the actions of the role: backup, verify, download,
	// restore_vm.
	May []string `json:"may"`
}

// roleActions are the console's actions and the route each one uses.
var roleActions = []struct{ action, route string }{
	{"backup", "POST /api/v1/jobs"},
	{"verify", "POST /api/v1/verify"},
	{"download", "POST /api/v1/downloads"},
	{"restore_vm", "POST /api/v1/restores"},
}

func (s *Server) handleWhoami(w http.ResponseWriter, r *http.Request) {
	id, _ := identityOf(r)
	out := Whoami{Name: id.Name, Role: id.Role, May: []string{}}
	for _, a := range roleActions {
		if id.Role >= routeRole(a.route) {
			out.May = append(out.May, a.action)
		}
	}
	writeJSON(w, http.StatusOK, out)
}
