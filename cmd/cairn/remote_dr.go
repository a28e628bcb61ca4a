package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/blockmap/remote"
	"github.com/cairnbackup/cairn/internal/bytesize"
)

// Advice for the mistakes of an administrator who sets up a remote on a
// new machine (disaster recovery): a misspelt remote name, a wrong bucket
// or endpoint.

// remoteNotConfigured is the error for a --remote NAME the repository does
// not know: it names the remotes it does know (a typo is the usual cause)
// and how to add one.
func remoteNotConfigured(repoDir, name string) error {
	known := configuredRemotes(repoDir)
	have := "the repository has no remotes yet"
	if len(known) > 0 {
		have = "its remotes: " + strings.Join(known, ", ")
	}
	return fmt.Errorf("remote %q is not configured in repository %s (%s); add it with cairn remote add %s --endpoint URL --bucket B --credentials FILE --key-file FILE (or --passphrase-file FILE; on a new machine: the same bucket, credentials and key as the old one)",
		name, repoDir, have, name)
}

// configuredRemotes lists the names of the repository's remotes, sorted.
func configuredRemotes(repoDir string) []string {
	ents, err := os.ReadDir(remotesDir(repoDir))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".json"); ok && e.Type().IsRegular() {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// noBucketAdvice follows ErrNoBucket: a misspelt bucket is likelier than a
// new remote whose init was forgotten, and creating an empty bucket is the
// wrong fix for a pull.
func noBucketAdvice(rc *remoteConfig) string {
	return fmt.Sprintf("remote %s names bucket %q at %s (cairn remote list): check its spelling and the endpoint; for a new remote, cairn remote init %s creates the bucket",
		rc.Name, rc.Bucket, rc.Endpoint, rc.Name)
}

// tlsAdvice explains a store certificate this machine does not trust, or
// "" for other errors.
func tlsAdvice(rc *remoteConfig, err error) string {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	if !errors.As(err, &cv) && !errors.As(err, &ua) && !errors.As(err, &hn) && !errors.As(err, &ci) {
		return ""
	}
	return fmt.Sprintf("the TLS certificate of %s (remote %s) is not trusted here: add its CA to the system's (update-ca-certificates) or name it with SSL_CERT_FILE=CA.pem; check the endpoint's host name; --insecure on cairn remote add skips the check (not recommended)",
		rc.Endpoint, rc.Name)
}

// unreachableAdvice explains a store that cannot be reached at all
// (connection refused, no such host, no route), or "" for other errors.
func unreachableAdvice(rc *remoteConfig, err error) string {
	var op *net.OpError
	var dns *net.DNSError
	if !errors.As(err, &op) && !errors.As(err, &dns) {
		return ""
	}
	return fmt.Sprintf("the object store at %s (remote %s) cannot be reached: check the endpoint (cairn remote list) and that the store is running and reachable from this machine",
		rc.Endpoint, rc.Name)
}

// checkVerifyFlags refuses verify flags that would be silently ignored:
// --sample reads a share of a remote's packs (the repository verify reads
// every block), and verify --remote checks the whole remote (packs are
// shared by every VM and point), so it cannot narrow to --vm or --point.
func checkVerifyFlags(remoteName, sample, vm, point string) error {
	if remoteName == "" && sample != "" {
		return fmt.Errorf("verify: --sample %s reads a share of a remote's packs: add --remote NAME, or drop --sample (the repository verify reads every block)", sample)
	}
	if remoteName != "" && (vm != "" || point != "") {
		return fmt.Errorf("verify --remote %s checks every point of the remote (its packs are shared by all VMs and points): drop --vm and --point (--sample P%% reads a share of the packs)", remoteName)
	}
	return nil
}

// pullAdvice follows a failed pull of one point: nothing of that point was
// committed, the points pulled before it stay, and a second run goes on
// where this one stopped; a full repository filesystem says so.
func pullAdvice(rc *remoteConfig, repoDir string, err error, pulled int) error {
	err = remoteAdvice(rc, err)
	if errors.Is(err, remote.ErrWrongKey) || errors.Is(err, remote.ErrAccessDenied) || errors.Is(err, blockmap.ErrInvalid) {
		return err
	}
	done := fmt.Sprintf("nothing of that point was committed (%s pulled before it stay)", count(pulled, "point"))
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("%w\nthe repository's filesystem is full: %s; free space there (df -h %s) or pull less (--vm, --point), then run cairn pull again", err, done, repoDir)
	}
	return fmt.Errorf("%w\n%s; run cairn pull --remote %s again to go on (points already pulled are skipped)", err, done, rc.Name)
}

// wrongKeyHint names the other way of giving the key: a file written as a
// passphrase (a line of text) given as --key-file counts its newline, and
// a key file given as --passphrase-file loses a trailing newline, so the
// right file given the wrong way is a wrong key.
func wrongKeyHint(rc *remoteConfig) string {
	if rc.KeyFile != "" {
		return fmt.Sprintf("if the remote was made with --passphrase-file, register it with --passphrase-file %s instead: a --key-file counts every byte, a trailing newline too", rc.KeyFile)
	}
	return fmt.Sprintf("if the remote was made with --key-file, register it with --key-file %s instead: a --passphrase-file loses its trailing newline", rc.PassphraseFile)
}

// remoteVerifySummary is the last line of `cairn verify --remote`; the
// unreferenced packs (an interrupted replication's, or a forgotten
// point's under a lock) say who removes them.
func remoteVerifySummary(name string, rep *remote.VerifyReport) string {
	s := fmt.Sprintf("remote %s: %s, read %d of %s (%s, %s) and %s: %s, %s, %s",
		name, count(rep.Points, "point"), rep.PacksRead, count(rep.Packs, "pack"), count(rep.BlobsRead, "blob"), bytesize.IEC(rep.BytesRead),
		count(rep.MapsRead, "block map"), count(len(rep.BadBlocks), "bad block"), count(len(rep.BadObjects), "bad object"), count(rep.OrphanPacks, "unreferenced pack"))
	if rep.OrphanMaps > 0 {
		s += ", " + count(rep.OrphanMaps, "unreferenced block map")
	}
	if rep.OrphanPacks > 0 || rep.OrphanMaps > 0 {
		s += fmt.Sprintf(" (cairn prune --remote %s deletes them once unlocked; one left without its index by an interrupted upload after a day)", name)
	}
	return s
}

// remoteVMPoints narrows a remote's points to one VM; a VM the remote has
// no point of (a misspelt name, most often) is an error naming the VMs it
// has, unless unreadable manifests might hold it.
func remoteVMPoints(remoteName, vm string, all []blockmap.Point, unreadable int) ([]blockmap.Point, error) {
	var out []blockmap.Point
	for _, p := range all {
		if p.VM == vm {
			out = append(out, p)
		}
	}
	if len(out) == 0 && unreadable == 0 {
		return nil, fmt.Errorf("VM %q: %w: remote %s has no points of it (%s)", vm, blockmap.ErrNotFound, remoteName, remoteVMList(all))
	}
	return out, nil
}

// remoteVMList says which VMs a remote holds points of.
func remoteVMList(pts []blockmap.Point) string {
	seen := map[string]bool{}
	var vms []string
	for _, p := range pts {
		if !seen[p.VM] {
			seen[p.VM] = true
			vms = append(vms, p.VM)
		}
	}
	if len(vms) == 0 {
		return "it holds no points"
	}
	sort.Strings(vms)
	return "its VMs: " + strings.Join(vms, ", ")
}

// exportRemoteFile writes a remote disk to the file out as a sparse raw
// image, as the local export does: mode 0600 (a VM's disk is as private
// as the repository), never inside the repository, and removed again when
// a block cannot be read (a damaged pack), so that no partial image is
// left to be taken for a good one. It was created 0644 and left behind.
func exportRemoteFile(repoDir, out string, dr *remote.DiskReader) error {
	if err := refuseInsideRepo(repoDir, out, "output"); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	f, err := createOutput(out, 0o600)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := writeRemoteExtents(f.File, dr); err != nil {
		f.abort()
		return err
	}
	if err := f.commit(true); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

func writeRemoteExtents(f *os.File, dr *remote.DiskReader) error {
	buf := make([]byte, 4<<20)
	for _, e := range dr.DataExtents() {
		for off := e.Offset; off < e.Offset+e.Length; {
			n := min(int64(len(buf)), e.Offset+e.Length-off)
			if _, err := dr.ReadAt(buf[:n], off); err != nil && err != io.EOF {
				return err
			}
			if _, err := f.WriteAt(buf[:n], off); err != nil {
				return err
			}
			off += n
		}
	}
	return f.Truncate(dr.Size())
}

// pointDamaged tells a pull failure that is the remote point's own (a
// blob or object that fails authentication or is missing): running pull
// again fails alike, and the other points can still be pulled.
func pointDamaged(err error) bool {
	return errors.Is(err, remote.ErrCorrupt) || errors.Is(err, remote.ErrNotFound) || errors.Is(err, remote.ErrFormat)
}

// damagedPullError ends a pull that skipped damaged points (nil when none).
func damagedPullError(remoteName string, damaged []string) error {
	if len(damaged) == 0 {
		return nil
	}
	return cli.Exit(fmt.Sprintf("pull: %s not pulled, the remote copy is damaged (%s): nothing of them was committed; cairn verify --remote %s names the damaged objects and blocks, and the remote's other points were pulled",
		count(len(damaged), "point"), strings.Join(damaged, ", "), remoteName), 1)
}
