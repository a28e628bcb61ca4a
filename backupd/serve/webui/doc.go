// Package webui is the web console of cairn serve: hand-written HTML,
// CSS and JavaScript (no framework, no build step, nothing external),
// embedded in the binary and served under /ui/ on serve's own listener.
//
// # Vocabulary
//
//   - Console: the single page (index.html) with its views: Dashboard
//     (GET /api/v1/status, polled), VMs and points, Files (the file
//     browser over /api/v1/points/{vm}/{point}/files), Jobs (history and
//     "back up now").
//   - Login: the API token, typed into the login form or passed once in
//     the URL fragment (#token=...), kept in the tab's sessionStorage and
//     sent as "Authorization: Bearer" by fetch; it is never put in a URL
//     that reaches the server, and no cookie exists, so there is no CSRF
//     surface.
//   - Download: a short-lived signed URL that POST /api/v1/downloads
//     mints (with the token) and the browser then follows as a link.
package webui
