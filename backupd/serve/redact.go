package serve

import (
	"bytes"
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

// A hook's command line and output are the configuration's and the
// hook's business: a command line may carry a password (mysql -pSECRET,
// a curl header) and its output what the program printed (guest data).
// A viewer gets the hook's program, exit code and error, not its other
// arguments or its output (docs/security.md, Roles), nor the last output
// line a failed hook's summary adds to a run's error and warnings.

// hookRedactedRoutes are the GET routes whose answers hold hook results.
var hookRedactedRoutes = map[string]bool{
	"GET /api/v1/jobs":      true,
	"GET /api/v1/jobs/wait": true,
	"GET /api/v1/vms":       true,
	"GET /api/v1/status":    true,
}

// redactHooks answers through next, keeping in every "hooks" list of its
// JSON answer only each hook's program (argv[0]) and no output; each
// redacted hook says "redacted": true.
func redactHooks(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &bufferWriter{header: http.Header{}}
		next.ServeHTTP(rec, r)
		body := rec.buf.Bytes()
		if rec.code == 0 {
			rec.code = http.StatusOK
		}
		if rec.code == http.StatusOK {
			if out, ok := redactedBody(body); ok {
				body = out
			}
		}
		for k, vs := range rec.header {
			w.Header()[k] = vs
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(rec.code)
		w.Write(body)
	})
}

// redactedBody is the JSON body with its hook results redacted, and
// whether it held any.
func redactedBody(body []byte) ([]byte, bool) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if dec.Decode(&v) != nil {
		return nil, false
	}
	hooks := redactHooksIn(v)
	if lines := redactHookLines(v); !hooks && !lines {
		return nil, false
	}
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, false
	}
	return append(out, '\n'), true
}

// redactHooksIn redacts the hook results in v; it reports whether there
// were any.
func redactHooksIn(v any) bool {
	changed := false
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if hooks, ok := e.([]any); ok && k == "hooks" {
				for _, h := range hooks {
					if m, ok := h.(map[string]any); ok {
						if argv, ok := m["argv"].([]any); ok && len(argv) > 1 {
							m["argv"] = argv[:1]
						}
						delete(m, "output")
						delete(m, "truncated")
						m["redacted"] = true
						changed = true
					}
				}
				continue
			}
			changed = redactHooksIn(e) || changed
		}
	case []any:
		for _, e := range x {
			changed = redactHooksIn(e) || changed
		}
	}
	return changed
}

// hookSummaryOutput matches the end of a failed hook's summary
// (backupd.HookResult.Summary: "HOOK hook PROGRAM: WHY: LAST OUTPUT
// LINE") where WHY is one a running hook ends with; errors and warnings
// end with such a summary.
var hookSummaryOutput = regexp.MustCompile(`((?:pre_job|post_job|pre_snapshot|post_snapshot|post_backup) hook \S+: (?:exit status -?\d+|signal: [a-z ]+|timed out after \S+ \(its process group was killed\))): .+`)

// redactHookLines removes from every string in v (errors, warnings, the
// status's failed hooks) the last output line a failed hook's summary
// ends with: a viewer learns that a hook failed and why it ended, not
// what it printed. It reports whether it changed anything.
func redactHookLines(v any) bool {
	changed := false
	clean := func(s string) string {
		if !strings.Contains(s, " hook ") {
			return s
		}
		out := hookSummaryOutput.ReplaceAllString(s, "$1: (hook output redacted)")
		changed = changed || out != s
		return out
	}
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if str, ok := e.(string); ok {
				x[k] = clean(str)
			} else if redactHookLines(e) {
				changed = true
			}
		}
	case []any:
		for i, e := range x {
			if str, ok := e.(string); ok {
				x[i] = clean(str)
			} else if redactHookLines(e) {
				changed = true
			}
		}
	}
	return changed
}

// bufferWriter keeps an answer to rewrite it.
type bufferWriter struct {
	header http.Header
	code   int
	buf    bytes.Buffer
}

func (b *bufferWriter) Header() http.Header { return b.header }

func (b *bufferWriter) WriteHeader(code int) {
	if b.code == 0 {
		b.code = code
	}
}

func (b *bufferWriter) Write(p []byte) (int, error) {
	if b.code == 0 {
		b.code = http.StatusOK
	}
	return b.buf.Write(p)
}
