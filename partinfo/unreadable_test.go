package partinfo_test

import (
	"regexp"
	"testing"

	"github.com/cairnbackup/cairn/partinfo"
)

// TestUnreadableSentences: every ERROR.txt text (and the CLI error made
// of it) is whole sentences, each beginning with a capital letter (or
// with the product's name, which is written in lower case).
func TestUnreadableSentences(t *testing.T) {
	lower := regexp.MustCompile(`\. ([a-z]\w*)`)
	for _, typ := range []string{"lvm2", partinfo.TypeMDMember, "bitlocker", "luks", "refs", partinfo.TypeLDM, "swap", "iso9660", "", "squashfs"} {
		u := partinfo.Unreadable(partinfo.Detection{Type: typ})
		if u == nil {
			t.Errorf("%q: readable?", typ)
			continue
		}
		for _, m := range lower.FindAllStringSubmatch(u.Error(), -1) {
			if m[1] != "cairn" {
				t.Errorf("%q: a sentence starts in lower case (%q): %s", typ, m[0], u.Error())
			}
		}
	}
}
