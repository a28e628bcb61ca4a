package main

import (
	"reflect"
	"testing"
)

func TestRewriteArgs(t *testing.T) {
	cases := []struct{ in, want []string }{
		{[]string{"cairn", "verify"}, []string{"cairn", "verify"}},
		{[]string{"cairn", "--repo", "r", "verify", "--against-source", "--vcenter", "u", "--vm", "a"},
			[]string{"cairn", "--repo", "r", "verify-source", "--vcenter", "u", "--vm", "a"}},
		{[]string{"cairn", "verify", "--vcenter", "u", "--against-source", "--repair"}, []string{"cairn", "verify-source", "--vcenter", "u", "--repair"}},
		{[]string{"cairn", "import", "--against-source"}, []string{"cairn", "import", "--against-source"}},
		{[]string{"cairn", "verify", "--against-source=true", "--vm", "a"}, []string{"cairn", "verify-source", "--vm", "a"}},
		{[]string{"cairn", "verify", "--against-source=false"}, []string{"cairn", "verify"}},
		{[]string{"cairn", "verify", "--against-source=maybe"}, []string{"cairn", "verify", "--against-source=maybe"}},
		{[]string{"cairn", "--repo", "verify", "points", "--against-source"}, []string{"cairn", "--repo", "verify", "points", "--against-source"}},
		{[]string{"cairn", "--repo=verify", "--log-level", "debug", "verify", "-against-source"}, []string{"cairn", "--repo=verify", "--log-level", "debug", "verify-source"}},
		{[]string{"cairn", "verify", "--", "--against-source"}, []string{"cairn", "verify", "--", "--against-source"}},
	}
	for _, c := range cases {
		if got := rewriteArgs(newApp(), c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("rewriteArgs(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}
