package serve

import (
	"go/ast"
	goparser "go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd"
)

// loaderKeys is every key the cairn.yaml parser accepts: the allowed keys
// of each p.fields call in this package's source (string literals, the
// backupd.Hook* constants, and a keys... slice built in the same function).
func loaderKeys(t *testing.T) map[string]bool {
	t.Helper()
	consts := map[string]string{
		"HookPreJob": backupd.HookPreJob, "HookPostJob": backupd.HookPostJob, "HookPreSnapshot": backupd.HookPreSnapshot,
		"HookPostSnapshot": backupd.HookPostSnapshot, "HookPostBackup": backupd.HookPostBackup,
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	fset := token.NewFileSet()
	lit := func(e ast.Expr) (string, bool) {
		if b, ok := e.(*ast.BasicLit); ok && b.Kind == token.STRING {
			s, err := strconv.Unquote(b.Value)
			return s, err == nil
		}
		return "", false
	}
	calls := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := goparser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || sel.Sel.Name != "fields" || len(call.Args) < 3 {
					return true
				}
				calls++
				for _, a := range call.Args[2:] {
					if s, ok := lit(a); ok {
						keys[s] = true
						continue
					}
					if se, ok := a.(*ast.SelectorExpr); ok {
						v, ok := consts[se.Sel.Name]
						if !ok {
							t.Fatalf("%s: p.fields key %s: add it to this test's constants", fset.Position(a.Pos()), se.Sel.Name)
						}
						keys[v] = true
						continue
					}
					if id, ok := a.(*ast.Ident); ok && call.Ellipsis.IsValid() {
						// keys := []string{...}; keys = append(keys, ...)
						ast.Inspect(fn.Body, func(m ast.Node) bool {
							as, ok := m.(*ast.AssignStmt)
							if !ok || len(as.Lhs) != 1 {
								return true
							}
							if l, ok := as.Lhs[0].(*ast.Ident); !ok || l.Name != id.Name {
								return true
							}
							ast.Inspect(as.Rhs[0], func(r ast.Node) bool {
								if e, ok := r.(ast.Expr); ok {
									if s, ok := lit(e); ok {
										keys[s] = true
									}
								}
								return true
							})
							return true
						})
						continue
					}
					t.Fatalf("%s: a p.fields key this test cannot read", fset.Position(a.Pos()))
				}
				return true
			})
		}
	}
	if calls < 10 || !keys["repository"] || !keys["exclude_disks"] || !keys["on_failure"] {
		t.Fatalf("found %d p.fields calls, keys %v: the parser's shape changed", calls, keys)
	}
	return keys
}

// yamlKey is a mapping key: at the start of a YAML line (after "- ", or
// after "# " in a commented-out line), or in a flow mapping {key: value}.
var yamlKey = regexp.MustCompile(`(?m)(?:^\s*(?:#\s*)?(?:-\s+)*|[{,]\s*)([a-z][a-z0-9_]*):(?:\s|$)`)

// TestConfigKeysDocumented: every key the cairn.yaml parser accepts is
// named in docs/serve.md (as `key` or key: in an example), and every key
// of a YAML example in docs/serve.md, docs/lab.md, docs/remote.md,
// docs/boot.md and README.md is one the parser accepts — also the
// fragments that TestDocExamplesLoad cannot load whole. (Keys of free-form
// maps, such as a webhook's headers, are allowed by name below.)
func TestConfigKeysDocumented(t *testing.T) {
	keys := loaderKeys(t)
	serveDoc, err := os.ReadFile("../../docs/serve.md")
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	for k := range keys {
		if !strings.Contains(string(serveDoc), "`"+k+"`") && !regexp.MustCompile(`(?m)(^|[\s{,#])`+k+`:`).Match(serveDoc) {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	for _, k := range missing {
		t.Errorf("cairn.yaml key %q (the parser accepts it) is not in docs/serve.md", k)
	}
	freeForm := map[string]bool{"authorization": true}
	for _, doc := range []string{"../../docs/serve.md", "../../docs/lab.md", "../../docs/remote.md", "../../docs/boot.md", "../../README.md"} {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range yamlBlock.FindAllStringSubmatch(string(data), -1) {
			for _, km := range yamlKey.FindAllStringSubmatch(m[1], -1) {
				if !keys[km[1]] && !freeForm[km[1]] {
					t.Errorf("%s: example key %q is no cairn.yaml key:\n%s", doc, km[1], m[1])
				}
			}
		}
	}
}
