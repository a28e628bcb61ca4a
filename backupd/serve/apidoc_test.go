package serve

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestAPIRoutesDocumented: every route the server's mux serves has a row
// in docs/serve.md's API table (`| `METHOD PATH...` |`), path parameters
// written as {x} or NAME.
func TestAPIRoutesDocumented(t *testing.T) {
	var src []byte
	for _, f := range []string{"http.go", "console.go"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src = append(src, b...)
	}
	doc, err := os.ReadFile("../../docs/serve.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, l := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(l, "| `") {
			rows = append(rows, strings.TrimPrefix(l, "| `"))
		}
	}
	routes := regexp.MustCompile(`mux\.Handle(?:Func)?\("([A-Z]+ [^"]+)"`).FindAllStringSubmatch(string(src), -1)
	if len(routes) < 10 {
		t.Fatalf("found %d routes in http.go", len(routes))
	}
	param := regexp.MustCompile(`\\\{[^}]+\\\}`)
	for _, m := range routes {
		m[1] = strings.TrimSuffix(m[1], "{$}") // an exact path: the doc writes it plain
		pat := param.ReplaceAllString(regexp.QuoteMeta(m[1]), `(\{[^}]+\}|[A-Z]+)`)
		re := regexp.MustCompile(`^` + pat + `[ ?\x60\[]`)
		found := false
		for _, r := range rows {
			if re.MatchString(r) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s has no row in docs/serve.md's API table", m[1])
		}
	}
}
