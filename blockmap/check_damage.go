package blockmap

import "strings"

// damagePrefixes start the problems of Check that are damage: a live
// block's delta image gone, index keys that cannot be read. No write
// repairs them.
var damagePrefixes = []string{"missing delta image", "malformed index keys"}

// CheckDamage reports whether problem (a line of Check) is damage of the
// repository rather than a leftover of an interrupted write, prune or
// forget (an open session, a pending collection, block versions no point
// can see, an orphaned delta image): leftovers harm no point, and the
// next writer of the VM (backup, import, prune, forget) removes them; an
// open session of a writer still running ends with it.
func CheckDamage(problem string) bool {
	for _, p := range damagePrefixes {
		if strings.HasPrefix(problem, p) {
			return true
		}
	}
	return false
}
