package main

import (
	"fmt"

	"github.com/cairnbackup/cairn/blockmap/remote"
	"github.com/cairnbackup/cairn/internal/bytesize"
)

// count says n things: "1 point", "2 points" (noun is the singular; the
// plural adds an s, which is all the remote's messages need).
func count[N int | int64](n N, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// passive turns a prune line's verb into the summary's: "1 point would
// delete" says the opposite of what is meant.
func passive(verb string) string {
	if verb == "would delete" {
		return "would be deleted"
	}
	return verb
}

// pruneSummary is the last line of `cairn forget --remote` / `prune
// --remote`: verb is "deleted" or "would delete".
func pruneSummary(name string, rep *remote.PruneReport, verb string) string {
	verb = passive(verb)
	s := fmt.Sprintf("remote %s: %s %s, %d kept, %d locked; %s %s (%s), %s still locked, %s",
		name, count(len(rep.Deleted), "point"), verb, len(rep.Kept), len(rep.Locked), count(rep.PacksDeleted, "pack"), verb,
		bytesize.IEC(rep.BytesFreed), count(rep.PacksLocked, "unreferenced pack"), count(rep.Orphans, "orphan pack"))
	if rep.MapsDeleted > 0 || rep.MapsLocked > 0 {
		s += fmt.Sprintf("; %s %s, %s still locked", count(rep.MapsDeleted, "block map"), verb, count(rep.MapsLocked, "unreferenced block map"))
	}
	return s
}
