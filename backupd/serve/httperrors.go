package serve

import (
	"fmt"
	"net/http"
	"strings"
)

// jsonErrors answers requests mux has no route for as the API's other
// errors are answered, in JSON: 405 with Allow for a known path asked
// with another method, 404 naming the API's documentation otherwise
// (the mux's own answers are text/plain).
func jsonErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost} {
			if m == r.Method {
				continue
			}
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, p := mux.Handler(probe); p != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("%s %s: method not allowed (use %s)", r.Method, r.URL.Path, strings.Join(allow, " or ")))
			return
		}
		writeError(w, http.StatusNotFound, fmt.Errorf("%s %s: no such endpoint (docs/serve.md, \"HTTP API\", lists them)", r.Method, r.URL.Path))
	})
}
