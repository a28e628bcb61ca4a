package main

import (
	"slices"
	"strings"
	"testing"
)

func TestHoistGlobalFlags(t *testing.T) {
	app := newApp()
	for _, c := range []struct{ in, want string }{
		{"cairn points --repo R", "cairn --repo R points"},
		{"cairn points --repo=R --log-level debug", "cairn --repo=R --log-level debug points"},
		{"cairn --repo A restore vm --vm x --log-level debug --power-on", "cairn --repo A --log-level debug restore vm --vm x --power-on"},
		// a value of the command's own flag stays its value
		{"cairn restore vm --name --repo --vm x", "cairn restore vm --name --repo --vm x"},
		// after -- nothing moves; unknown commands are left to urfave/cli
		{"cairn export --vm x -- --repo", "cairn export --vm x -- --repo"},
		{"cairn nosuch --repo R", "cairn nosuch --repo R"},
		{"cairn points", "cairn points"},
		{"cairn --repo verify points", "cairn --repo verify points"},
	} {
		got := strings.Join(hoistGlobalFlags(app, strings.Fields(c.in)), " ")
		if got != c.want {
			t.Errorf("%q: got %q, want %q", c.in, got, c.want)
		}
	}
	if args := strings.Fields("cairn points --repo"); !slices.Equal(hoistGlobalFlags(app, args), args) {
		t.Error("a trailing --repo without a value moved")
	}
}
