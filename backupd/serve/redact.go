package serve

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
)

// A hook's command line and output are the configuration's and the
// hook's business: a command line may carry a password (mysql -pSECRET,
// a curl header) and its output what the program printed (guest data).
// A viewer gets the hook's program, exit code and error, not its other
// arguments or its output (docs/security.md, Roles).

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
			var v any
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.UseNumber()
			if dec.Decode(&v) == nil && redactHooksIn(v) {
				if out, err := json.MarshalIndent(v, "", "  "); err == nil {
					body = append(out, '\n')
				}
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
