package serve

import (
	"os"
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
			if _, err := ParseConfig(doc+" example "+string(rune('1'+i)), []byte(text)); err != nil {
				t.Errorf("%s: a documented config does not load: %v\n%s", doc, err, text)
			}
		}
		t.Logf("%s: %d configs", doc, n)
	}
}
