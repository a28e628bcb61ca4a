package serve

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// yamlBlock is a fenced YAML block of a Markdown file.
var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// TestDocExamplesLoad: every YAML example of docs/serve.md and
// docs/lab.md that is a whole cairn.yaml (it names a repository) loads as
// written, and `cairn config example` (cmd/cairn) is checked by its own
// test. An administrator copies these first.
func TestDocExamplesLoad(t *testing.T) {
	for _, doc := range []string{"../../docs/serve.md", "../../docs/lab.md", "../../docs/remote.md", "../../docs/boot.md", "../../README.md"} {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for i, m := range yamlBlock.FindAllStringSubmatch(string(data), -1) {
			text := m[1]
			if !strings.Contains(text, "repository:") {
				continue
			}
			n++
			text = standInFiles(t, text)
			if _, err := ParseConfig(doc+" example "+string(rune('1'+i)), []byte(text)); err != nil {
				t.Errorf("%s: a documented config does not load: %v\n%s", doc, err, text)
			}
		}
		t.Logf("%s: %d configs", doc, n)
	}
}

// fileKey is a key of the config that names a file the parser opens.
var fileKey = regexp.MustCompile(`(?m)\b(token_file|url_file|password_file|ca_file): *(/etc/[^\s,}\]]+)`)

// standInFiles points the example's files under /etc (secrets the
// administrator creates, such as a webhook token) at files made in a
// temporary directory, mode 0600 as the parser requires: the example is
// checked as written, only where its files live changes.
func standInFiles(t *testing.T, text string) string {
	dir := t.TempDir()
	text = fileKey.ReplaceAllStringFunc(text, func(m string) string {
		sub := fileKey.FindStringSubmatch(m)
		p := filepath.Join(dir, filepath.Base(sub[2]))
		content := "secret\n"
		if sub[1] == "url_file" {
			content = "https://hooks.example.com/secret\n"
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return sub[1] + ": " + p
	})
	return standInHookPrograms(t, dir, text)
}

// hookProgram is a hook's program under /usr/local (the administrator's
// own scripts).
var hookProgram = regexp.MustCompile(`command: \[(/usr/local/[^\s,\]]+)`)

// standInHookPrograms points the example's hook programs under /usr/local
// at executable scripts made in dir (the parser checks they exist).
func standInHookPrograms(t *testing.T, dir, text string) string {
	return hookProgram.ReplaceAllStringFunc(text, func(m string) string {
		p := filepath.Join(dir, filepath.Base(hookProgram.FindStringSubmatch(m)[1]))
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return "command: [" + p
	})
}
