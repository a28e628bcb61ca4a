package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/cairnbackup/cairn/backupd/serve"
	"github.com/cairnbackup/cairn/internal/bytesize"
)

// printReplications is `cairn status`'s replication section: for each
// remote the server replicates to, its last replicate and last verify run
// (GET /api/v1/replications keeps the runs themselves).
func printReplications(w io.Writer, runs []serve.ReplicationRecord) {
	type key struct{ remote, kind string }
	last := map[key]serve.ReplicationRecord{}
	for _, r := range runs { // oldest first: the last one stays
		last[key{r.Remote, r.Kind}] = r
	}
	if len(last) == 0 {
		return
	}
	keys := make([]key, 0, len(last))
	for k := range last {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].remote != keys[j].remote {
			return keys[i].remote < keys[j].remote
		}
		return keys[i].kind < keys[j].kind
	})
	fmt.Fprintln(w)
	for _, k := range keys {
		r := last[k]
		fmt.Fprintf(w, "remote %s: last %s (%s) %s\n", k.remote, k.kind, r.Trigger, replicationState(r))
	}
}

func replicationState(r serve.ReplicationRecord) string {
	switch r.State {
	case "running":
		return "running since " + when(r.Start)
	case "failed":
		msg, _, _ := strings.Cut(r.Error, "\n")
		return fmt.Sprintf("FAILED at %s: %s", when(r.End), msg)
	}
	if r.Kind == "verify" {
		return fmt.Sprintf("ok at %s, %s", when(r.End), count(r.VerifyErrors, "error"))
	}
	return fmt.Sprintf("ok at %s: %s copied, %d already there, %d pruned, %s uploaded",
		when(r.End), count(r.Replicated, "point"), r.Present, r.Pruned, bytesize.IEC(r.BytesUploaded))
}
