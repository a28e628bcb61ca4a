package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/backupd/serve"
	"github.com/cairnbackup/cairn/blockmap/remote"
	"github.com/cairnbackup/cairn/internal/bytesize"
)

// remoteManageCommands are the subcommands of cairn remote that manage a
// registered remote: rekey, remove, stats.
func remoteManageCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:      "rekey",
			Aliases:   []string{"passwd"},
			Usage:     "change the remote's key file or passphrase (the data is not re-encrypted)",
			ArgsUsage: "NAME --new-key-file FILE | --new-passphrase-file FILE",
			Description: "Opens the remote with its current key, wraps the same master key with a key derived\n" +
				"from the new key file or passphrase (argon2id, a new salt) and replaces the bucket's\n" +
				"cairn/config, read back and authenticated before the old one is given up; then this\n" +
				"repository's registration names the new file. The data is not re-encrypted: whoever\n" +
				"holds the old key and a copy of the old config can still read it (a master key that\n" +
				"leaked needs a new remote). Under Object Lock the old config version stays in the\n" +
				"bucket until its retention ends (docs/remote.md).",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "new-key-file", Usage: "`FILE` (mode 0600, at least 16 bytes) whose bytes become the key"},
				&cli.StringFlag{Name: "new-passphrase-file", Usage: "`FILE` (mode 0600) holding the new passphrase"},
				jsonFlag(),
			},
			Action: remoteRekeyAction,
		},
		{
			Name:      "remove",
			Aliases:   []string{"rm"},
			Usage:     "unregister the remote from this repository (the bucket is not touched)",
			ArgsUsage: "NAME",
			Description: "Deletes <repo>/remotes/NAME.json and the remote's local cache. Nothing in the bucket\n" +
				"is read or changed. Refused while a job of cairn serve replicates to it (the running\n" +
				"server's config, and --config FILE) unless --force.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "config", Usage: "also check the jobs of this cairn serve `FILE` (cairn.yaml)"},
				&cli.BoolFlag{Name: "force", Usage: "remove it even when serve jobs replicate to it"},
			},
			Action: remoteRemoveAction,
		},
		{
			Name:      "stats",
			Usage:     "what the remote holds: points per VM, packs, stored and logical bytes, their ratio",
			ArgsUsage: "NAME",
			Description: "Computed from the bucket's listing and the points' manifests: one LIST per 1,000\n" +
				"objects, one more of the points and one GET per point (plus the config's GET that\n" +
				"opening the remote costs); no pack or index is read.",
			Flags:  []cli.Flag{jsonFlag()},
			Action: remoteStatsAction,
		},
	}
}

// remoteByName parses the flags given after NAME and loads the remote
// NAME of the repository given by --repo (without opening the
// repository: a running cairn serve may hold it).
func remoteByName(c *cli.Context, what string) (*afterName, string, *remoteConfig, error) {
	if c.NArg() < 1 {
		return nil, "", nil, fmt.Errorf("remote %s: give the remote's NAME (cairn remote list shows them)", what)
	}
	a, err := parseAfterName(c)
	if err != nil {
		return nil, "", nil, err
	}
	dir := c.String("repo")
	if dir == "" {
		return nil, "", nil, errors.New("no repository given: use --repo DIR or set CAIRN_REPO")
	}
	rc, err := loadRemoteConfig(dir, c.Args().First())
	return a, dir, rc, err
}

// writeRemoteConfig replaces <repo>/remotes/NAME.json (0600) atomically.
func writeRemoteConfig(repoDir string, rc *remoteConfig) error {
	if err := os.MkdirAll(remotesDir(repoDir), 0o700); err != nil {
		return err
	}
	data, err := json.MarshalIndent(rc, "", "  ")
	if err != nil {
		return err
	}
	path := remoteConfigPath(repoDir, rc.Name)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// keyDescription names where a remote's key comes from.
func (rc *remoteConfig) keyDescription() string {
	if rc.KeyFile != "" {
		return "key file " + rc.KeyFile
	}
	return "passphrase file " + rc.PassphraseFile
}

func remoteRekeyAction(c *cli.Context) error {
	a, dir, rc, err := remoteByName(c, "rekey")
	if err != nil {
		return err
	}
	kf, pf := a.String("new-key-file"), a.String("new-passphrase-file")
	if (kf == "") == (pf == "") {
		return errors.New("remote rekey: give exactly one of --new-key-file FILE or --new-passphrase-file FILE")
	}
	next := *rc
	next.KeyFile, next.PassphraseFile = "", ""
	if kf != "" {
		next.KeyFile, _ = filepath.Abs(kf)
	} else {
		next.PassphraseFile, _ = filepath.Abs(pf)
	}
	no, err := next.options() // the new file exists, is private and holds a key
	if err != nil {
		return err
	}
	o, err := rc.optionsIn(dir)
	if err != nil {
		return err
	}
	if bytes.Equal(o.Secret, no.Secret) {
		return fmt.Errorf("remote rekey: the new %s holds the same key as the current %s: nothing to change", next.keyDescription(), rc.keyDescription())
	}
	rem, err := remote.Open(c.Context, o)
	if errors.Is(err, remote.ErrWrongKey) {
		// An earlier rekey may have replaced the config and ended before
		// the registration named the new file.
		if nrem, nerr := remote.Open(c.Context, no); nerr == nil {
			nrem.Close()
			if err := switchRemoteKey(dir, &next); err != nil {
				return err
			}
			fmt.Printf("remote %s already opens with the new %s (an earlier rekey ended before this repository's registration was updated): registration updated\n", rc.Name, next.keyDescription())
			return nil
		}
	}
	if errors.Is(err, remote.ErrKeyChanged) {
		return fmt.Errorf("%w\nthe new %s does not open it either: give the key file or passphrase it was changed to", err, next.keyDescription())
	}
	if errors.Is(err, remote.ErrWrongKey) {
		return fmt.Errorf("%w\nrekey needs the current key: the registration names the %s; if that file was already overwritten with the new key, put the current one back there and give the new one with --new-key-file or --new-passphrase-file", err, rc.keyDescription())
	}
	if err != nil {
		return remoteAdvice(rc, err)
	}
	defer rem.Close()
	rep, err := rem.Rekey(c.Context, no.Secret)
	if err != nil {
		return remoteAdvice(rc, fmt.Errorf("%w\nthe remote still opens with its current %s (the registration is unchanged)", err, rc.keyDescription()))
	}
	if err := switchRemoteKey(dir, &next); err != nil {
		return fmt.Errorf("the remote's key was changed, but the registration was not updated: %w\nrun cairn remote rekey %s again with the same new file: it finds the remote already rekeyed and updates the registration", err, rc.Name)
	}
	if a.Bool("json") {
		return printJSON(map[string]any{"remote": rc.Name, "key": next.keyDescription(), "rekey": rep})
	}
	fmt.Printf("remote %s: the master key is now wrapped with the %s (registration updated, key cache dropped)\n", rc.Name, next.keyDescription())
	fmt.Printf("the data was not re-encrypted: the old %s opens no current config, but with a copy of the old config it still reads the data; a leaked master key needs a new remote\n", rc.keyDescription())
	if rep.OldDeleted > 0 {
		fmt.Printf("deleted %s of the old config from the bucket's version history\n", count(rep.OldDeleted, "version"))
	}
	for _, v := range rep.OldRetained {
		if v.Until.IsZero() {
			fmt.Printf("the old config (version %s) stays in the bucket: the store refused its deletion (a legal hold?); while it is there the old key still unwraps the master key from it: delete that version once the hold is lifted\n", v.Version)
			continue
		}
		fmt.Printf("the old config (version %s) stays in the bucket under Object Lock until %s: until then the old key still unwraps the master key from it; cairn prune --remote %s deletes it after that date\n",
			v.Version, v.Until.UTC().Format(time.RFC3339), rc.Name)
	}
	fmt.Printf("keep a copy of the new %s somewhere safe: without it the remote's data cannot be read\n", next.keyDescription())
	return nil
}

// switchRemoteKey makes the registration name the new key or passphrase
// file and drops the key cache (sealed with the old key file).
func switchRemoteKey(dir string, next *remoteConfig) error {
	if err := writeRemoteConfig(dir, next); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(remoteCacheDir(dir, next.Name), "key")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// servingJobs lists the jobs of cairn serve configs (the one given and
// the running server's) that replicate to remote name, as "FILE: job".
func servingJobs(dir, name, extra string) (jobs []string, warnings []string) {
	files := []string{}
	if extra != "" {
		files = append(files, extra)
	}
	if sf, err := serve.ReadServeFile(dir); err == nil && sf.Config != "" {
		files = append(files, sf.Config)
	}
	seen := map[string]bool{}
	for _, f := range files {
		abs, _ := filepath.Abs(f)
		if seen[abs] {
			continue
		}
		seen[abs] = true
		cfg, err := serve.LoadConfig(f)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("cannot check the jobs of %s: %v", f, err))
			continue
		}
		for _, j := range cfg.Jobs {
			if j.Replicate != nil && j.Replicate.Remote == name {
				jobs = append(jobs, fmt.Sprintf("%s: job %s", abs, j.Name))
			}
		}
	}
	return jobs, warnings
}

func remoteRemoveAction(c *cli.Context) error {
	a, dir, rc, err := remoteByName(c, "remove")
	if err != nil {
		return err
	}
	jobs, warnings := servingJobs(dir, rc.Name, a.String("config"))
	for _, w := range warnings {
		fmt.Fprintln(os.Stderr, "warning: "+w)
	}
	if len(jobs) > 0 && !a.Bool("force") {
		return fmt.Errorf("remote %s is replicated to by cairn serve (%s): remove replicate: from those jobs and reload serve (SIGHUP) first, or give --force", rc.Name, strings.Join(jobs, "; "))
	}
	unlock, err := lockRemote(dir, rc.Name)
	if err != nil {
		return err
	}
	err = os.Remove(remoteConfigPath(dir, rc.Name))
	unlock()
	if err != nil {
		return err
	}
	if err := os.RemoveAll(remoteCacheDir(dir, rc.Name)); err != nil {
		return fmt.Errorf("remote %s unregistered, but its cache stays: %w", rc.Name, err)
	}
	fmt.Printf("removed remote %s from repository %s (its registration and local cache); bucket %s at %s was not touched and keeps its points\n", rc.Name, dir, rc.Bucket, rc.Endpoint)
	fmt.Printf("to register it again: %s\n", rc.addCommand())
	return nil
}

// addCommand is the cairn remote add command that registers rc.
func (rc *remoteConfig) addCommand() string {
	args := []string{"cairn remote add", rc.Name, "--endpoint", rc.Endpoint, "--bucket", rc.Bucket}
	if rc.Region != "" {
		args = append(args, "--region", rc.Region)
	}
	if rc.CredentialsFile != "" {
		args = append(args, "--credentials", rc.CredentialsFile)
	}
	if rc.KeyFile != "" {
		args = append(args, "--key-file", rc.KeyFile)
	} else {
		args = append(args, "--passphrase-file", rc.PassphraseFile)
	}
	if rc.ImmutableDays > 0 {
		args = append(args, "--immutable-days", fmt.Sprint(rc.ImmutableDays))
	}
	if rc.Insecure {
		args = append(args, "--insecure")
	}
	return strings.Join(args, " ")
}

func remoteStatsAction(c *cli.Context) error {
	a, dir, rc, err := remoteByName(c, "stats")
	if err != nil {
		return err
	}
	o, err := rc.optionsIn(dir)
	if err != nil {
		return err
	}
	rem, err := remote.Open(c.Context, o)
	if err != nil {
		return remoteAdvice(rc, err)
	}
	defer rem.Close()
	st, err := rem.Stats(c.Context)
	if err != nil {
		return remoteAdvice(rc, err)
	}
	if st.Bucket != nil {
		writeRetentionCache(dir, rc.Name, *st.Bucket) // remote list shows it
	}
	if a.Bool("json") {
		return printJSON(map[string]any{"remote": rc.Name, "bucket": rc.Bucket, "endpoint": rc.Endpoint, "stats": st})
	}
	const day = "2006-01-02 15:04"
	fmt.Printf("remote %s (bucket %s at %s): %s of %s", rc.Name, rc.Bucket, rc.Endpoint, count(st.Points, "point"), count(len(st.VMs), "VM"))
	if st.Points > 0 {
		fmt.Printf(", %s .. %s UTC", st.Oldest.UTC().Format(day), st.Newest.UTC().Format(day))
	}
	fmt.Println()
	if len(st.VMs) > 0 {
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VM\tPOINTS\tOLDEST (UTC)\tNEWEST (UTC)\tDATA")
		for _, v := range st.VMs {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", v.VM, v.Points, v.Oldest.UTC().Format(day), v.Newest.UTC().Format(day), bytesize.IEC(v.LogicalBytes))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Printf("stored: %s in %s (%s with %s, %s and %s)\n", bytesize.IEC(st.PackBytes), count(st.Packs, "pack"), bytesize.IEC(st.StoredBytes), fmt.Sprintf("%d pack indexes", st.Indexes), count(st.Manifests, "manifest"), count(st.Maps, "block map"))
	fmt.Printf("data of all points: %s, %.2fx the packs (deduplication and compression)\n", bytesize.IEC(st.LogicalBytes), st.Ratio)
	if st.UnreferencedPacks > 0 {
		fmt.Printf("unreferenced: %s (%s) no point refers to; cairn prune --remote %s deletes them when their retention allows\n", count(st.UnreferencedPacks, "pack"), bytesize.IEC(st.UnreferencedBytes), rc.Name)
	}
	for _, b := range st.Unreadable {
		fmt.Printf("unreadable manifest %s: %s (its point is not counted)\n", b.Object, b.Err)
	}
	fmt.Println(immutableLine(rc.Name, st))
	fmt.Printf("%s\n", count(st.Requests+1, "request"))
	return nil
}
