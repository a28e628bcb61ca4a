package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/blockmap/remote"
	"github.com/cairnbackup/cairn/internal/bytesize"
)

// printRemotePoints is `cairn points --remote`'s table: the columns of
// `cairn points` that a remote knows, GEN included (--point takes a
// generation number on a remote too), then the unreadable manifests.
func printRemotePoints(w io.Writer, name string, pts []blockmap.Point, bad []remote.BadObject) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VM\tPOINT\tGEN\tTIME (UTC)\tCONSISTENCY\tDISKS")
	for _, p := range pts {
		var disks []string
		for _, d := range p.Disks {
			disks = append(disks, fmt.Sprintf("%s (%s)", d.Name, bytesize.IEC(d.Size)))
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", p.VM, p.ID, p.Gen, p.Time.UTC().Format("2006-01-02 15:04:05"), p.Consistency, strings.Join(disks, ", "))
	}
	tw.Flush()
	for _, b := range bad {
		fmt.Fprintf(w, "UNREADABLE %s: %s\n", b.Object, b.Err)
	}
	fmt.Fprintf(w, "remote %s: %d points\n", name, len(pts))
}

// remotePointError is a point looked up on a remote that has no such
// point; hintFor sends the user to the remote's list, not the local one.
type remotePointError struct {
	Remote string
	Err    error
}

func (e *remotePointError) Error() string { return e.Err.Error() + " on remote " + e.Remote }
func (e *remotePointError) Unwrap() error { return e.Err }

// findRemotePoint is blockmap.FindPoint over a remote's points, its
// not-found error naming the remote.
func findRemotePoint(pts []blockmap.Point, remoteName, vm, ref string) (blockmap.Point, error) {
	if err := ambiguousRemoteGen(pts, remoteName, vm, ref); err != nil {
		return blockmap.Point{}, err
	}
	p, err := blockmap.FindPoint(pts, vm, ref)
	var nf *blockmap.PointNotFoundError
	if errors.As(err, &nf) {
		return p, &remotePointError{Remote: remoteName, Err: err}
	}
	return p, err
}

// ambiguousRemoteGen refuses a generation number that names several
// points of a VM on a remote: generations are numbered by whichever
// repository replicated a point, so after a disaster the new repository's
// numbers repeat the old one's.
func ambiguousRemoteGen(pts []blockmap.Point, remoteName, vm, ref string) error {
	g, err := strconv.ParseUint(ref, 10, 32)
	if err != nil {
		return nil
	}
	var ids []string
	for _, p := range pts {
		if p.ID == ref {
			return nil
		}
		if uint64(p.Gen) == g {
			ids = append(ids, p.ID)
		}
	}
	if len(ids) < 2 {
		return nil
	}
	return fmt.Errorf("generation %d names %d points of VM %s on remote %s (%s), replicated from different repositories: give the point's id",
		g, len(ids), vm, remoteName, strings.Join(ids, ", "))
}

// remotePointHint is the hint for a point a remote lacks.
func remotePointHint(e *remotePointError) string {
	var nf *blockmap.PointNotFoundError
	if !errors.As(e.Err, &nf) {
		return ""
	}
	if nf.Ref == "" {
		return fmt.Sprintf("see `cairn points --remote %s`", e.Remote)
	}
	return fmt.Sprintf("give an id from `cairn points --remote %s --vm %s`, a generation number, or latest", e.Remote, nf.VM)
}

// selectPull picks the points `cairn pull` copies: every point, those of
// the VMs named, or one point of one VM (--point: id, generation number or
// latest, as everywhere else).
func selectPull(pts []blockmap.Point, remoteName string, vms []string, point string) ([]blockmap.Point, error) {
	if point != "" {
		if len(vms) != 1 {
			return nil, errors.New("--point needs exactly one --vm")
		}
		p, err := findRemotePoint(filterVM(pts, vms[0]), remoteName, vms[0], point)
		if err != nil {
			return nil, fmt.Errorf("pull: %w", err)
		}
		return []blockmap.Point{p}, nil
	}
	want := map[string]bool{}
	for _, v := range vms {
		want[v] = true
	}
	var sel []blockmap.Point
	for _, p := range pts {
		if len(want) == 0 || want[p.VM] {
			sel = append(sel, p)
		}
	}
	switch {
	case len(sel) > 0:
	case len(vms) == 0: // every point was asked for: name no VM
		return nil, fmt.Errorf("pull: %w: remote %s has no points (cairn replicate --remote %s copies the repository's points to it; cairn points --remote %s lists what it holds)", blockmap.ErrNotFound, remoteName, remoteName, remoteName)
	default:
		return nil, fmt.Errorf("pull: %w: the remote has no points of %s (%s; cairn points --remote %s lists them)", blockmap.ErrNotFound, strings.Join(vms, ", "), remoteVMList(pts), remoteName)
	}
	return sel, nil
}

// forgetLockedError fails `forget --remote` when points it was asked to
// delete are under Object Lock retention and were kept: the user named
// them, so exit 0 would claim they are gone. (A prune keeping locked
// points is its policy working, not a failure.)
func forgetLockedError(command string, rep *remote.PruneReport) error {
	if command != "forget" || rep.DryRun || len(rep.Locked) == 0 {
		return nil
	}
	var last time.Time
	for _, p := range rep.Locked {
		if p.Until.After(last) {
			last = p.Until
		}
	}
	return fmt.Errorf("forget: %d of the points named are under Object Lock retention and were kept; forget them again after %s",
		len(rep.Locked), last.UTC().Format(time.RFC3339))
}
