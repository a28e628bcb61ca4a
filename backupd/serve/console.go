package serve

import (
	"net/http"
	"strings"

	"github.com/cairnbackup/cairn/backupd/serve/webui"
)

// ConsoleCSP is the Content-Security-Policy of the web console's pages:
// only the console's own scripts, styles and API (no inline script, no
// external resource: the appliance may have no internet), images from
// the API as blobs, no framing, no forms posting elsewhere.
const ConsoleCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// routeConsole adds the web console (/ redirects to /ui/, whose static
// files package webui embeds) and the file endpoints it uses.
func (s *Server) routeConsole(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/", http.StatusFound)
	})
	mux.Handle("GET /ui/", http.StripPrefix("/ui", webui.Handler()))
	mux.HandleFunc("GET /api/v1/repository", s.handleRepository)                       // console_overview.go
	mux.HandleFunc("GET /api/v1/points/{vm}/{point}/filesystems", s.handleFilesystems) // browse_api.go
	mux.HandleFunc("GET /api/v1/points/{vm}/{point}/files", s.handleFiles)
	mux.HandleFunc("GET /api/v1/vms/{vm}/history", s.handleHistory)      // history_api.go
	mux.HandleFunc("GET /api/v1/points/{vm}/{point}/diff", s.handleDiff) // diff_api.go
	mux.HandleFunc("POST /api/v1/downloads", s.handleMintDownload)       // download.go
	mux.HandleFunc("GET /api/v1/download/{ticket}", s.handleDownload)
}

// isConsole reports whether r asks for a page of the console (no token:
// the pages hold no data; every API call they make sends the token).
func isConsole(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	return r.URL.Path == "/" || r.URL.Path == "/ui" || strings.HasPrefix(r.URL.Path, "/ui/")
}

// consoleHeaders sets the security headers of every answer: no sniffing,
// no framing, no referrer, a strict CSP, and no caching of API answers
// (they hold guest data and state).
func consoleHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setSecurityHeaders(w.Header(), r.URL.Path) // hardening.go
		next.ServeHTTP(w, r)
	})
}
