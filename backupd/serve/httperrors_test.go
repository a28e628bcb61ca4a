package serve

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestAPIErrorsJSON: every error of the API is JSON with a message, also
// an unknown endpoint (404) and a known one asked with the wrong method
// (405 with Allow); a POST /api/v1/jobs with an unknown field (a
// misspelt "job") is refused instead of backing up with another job, and
// so is an acknowledgement with a misspelt "note".
func TestAPIErrorsJSON(t *testing.T) {
	a := startAPIServer(t, apiSim(t), apiConfig, nil)
	for _, c := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"GET", "/api/v1/nope", "", 404, "no such endpoint"},
		{"GET", "/api/v1/verify", "", 405, "use POST"},
		{"DELETE", "/metrics", "", 405, "use GET"},
		{"POST", "/api/v1/jobs", `{"vm":"web-1","jbo":"gold"}`, 400, `unknown field "jbo"`},
		{"POST", "/api/v1/jobs", `{"job":"web"}`, 400, `no "vm"`},
		// every POST body is read by decodeBody: an acknowledgement's
		// misspelt "note" was dropped silently
		{"POST", "/api/v1/acks", `{"vm":"web-1","point":"1","ntoe":"false alarm"}`, 400, `unknown field "ntoe"`},
	} {
		code, body := a.do(t, c.method, c.path, c.body, map[string]string{"Content-Type": "application/json"})
		var e struct{ Error string }
		if code != c.code || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, c.want) {
			t.Errorf("%s %s %s: %d %s; want %d and a JSON error with %q", c.method, c.path, c.body, code, body, c.code, c.want)
		}
	}
	if len(a.s.Runs()) != 0 {
		t.Errorf("refused requests started runs: %+v", a.s.Runs())
	}
}
