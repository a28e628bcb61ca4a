package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/blockmap/remote"
)

// remoteListFlags are cairn remote list's flags.
func remoteListFlags() []cli.Flag {
	return []cli.Flag{
		jsonFlag(),
		&cli.BoolFlag{Name: "check", Usage: "ask each remote's bucket what Object Lock retention applies (two requests per remote, no key needed); without it nothing is asked and a remote added without --immutable-days shows what the last check or remote stats learned, or unknown"},
	}
}

// retentionCache is <repo>/remotes/NAME.cache/retention.json: what the
// last remote list --check or remote stats learned of the bucket.
type retentionCache struct {
	Checked   time.Time        `json:"checked"`
	Retention remote.Retention `json:"retention"`
}

func retentionCachePath(repoDir, name string) string {
	return filepath.Join(remoteCacheDir(repoDir, name), "retention.json")
}

func readRetentionCache(repoDir, name string) (*retentionCache, bool) {
	data, err := os.ReadFile(retentionCachePath(repoDir, name))
	if err != nil {
		return nil, false
	}
	var rc retentionCache
	if json.Unmarshal(data, &rc) != nil {
		return nil, false
	}
	return &rc, true
}

func writeRetentionCache(repoDir, name string, r remote.Retention) {
	dir := remoteCacheDir(repoDir, name)
	if os.MkdirAll(dir, 0o700) != nil {
		return
	}
	data, _ := json.Marshal(retentionCache{Checked: time.Now().UTC(), Retention: r})
	_ = os.WriteFile(retentionCachePath(repoDir, name), append(data, '\n'), 0o600)
}

// immutableColumn is remote list's IMMUTABLE DAYS: the registered days;
// else what a check learned: cairn's own (the remote's config), the
// bucket's default retention ("30 (bucket default)"), or 0; else unknown.
func immutableColumn(rc *remoteConfig, ret *remote.Retention) string {
	if ret == nil {
		if rc.ImmutableDays > 0 {
			return fmt.Sprint(rc.ImmutableDays)
		}
		return "unknown"
	}
	d, src := ret.Days(rc.ImmutableDays)
	switch {
	case src == remote.RetentionBucketDflt:
		return fmt.Sprintf("%d (bucket default)", d)
	case d > rc.ImmutableDays:
		return fmt.Sprintf("%d (remote config)", d)
	}
	return fmt.Sprint(d)
}

// checkRetention asks the remote's bucket (credentials only) what
// retention applies.
func checkRetention(ctx context.Context, rc *remoteConfig) (remote.Retention, error) {
	ak, sk, err := readCredentials(rc.CredentialsFile)
	if err != nil {
		return remote.Retention{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return remote.CheckRetention(ctx, remote.StoreOptions{Endpoint: rc.Endpoint, Bucket: rc.Bucket, Region: rc.Region, AccessKey: ak, SecretKey: sk, Insecure: rc.Insecure})
}

func remoteListAction(c *cli.Context) error {
	repo, err := openRepo(c)
	if err != nil {
		return err
	}
	dir := repo.Dir()
	repo.Close()
	ents, _ := os.ReadDir(remotesDir(dir))
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tENDPOINT\tBUCKET\tIMMUTABLE DAYS\tLIMIT RATE")
	unknown := false
	rows := []remoteListRow{}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		rc, err := loadRemoteConfig(dir, name)
		if err != nil {
			return err
		}
		var ret *remote.Retention
		if c.Bool("check") {
			r, err := checkRetention(c.Context, rc)
			if err != nil {
				fmt.Fprintf(os.Stderr, "remote %s: cannot ask bucket %s for its Object Lock retention: %v\n", rc.Name, rc.Bucket, remoteAdvice(rc, err))
			} else {
				ret = &r
				writeRetentionCache(dir, rc.Name, r)
			}
		} else if rc.ImmutableDays == 0 {
			if cached, ok := readRetentionCache(dir, rc.Name); ok {
				ret = &cached.Retention
			}
		}
		col := immutableColumn(rc, ret)
		unknown = unknown || col == "unknown"
		rows = append(rows, newRemoteListRow(rc, ret))
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", rc.Name, rc.Endpoint, rc.Bucket, col, rc.limitString())
	}
	if c.Bool("json") {
		return printJSON(rows)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if unknown {
		printUnknownRetention(os.Stdout)
	}
	return nil
}

// remoteListRow is one remote in remote list --json: its registration
// (never the credentials' or key's contents) and what applies of Object
// Lock: ImmutableDays and RetentionFrom as the text's column says them
// ("" and null when unknown: added without --immutable-days, not checked).
type remoteListRow struct {
	Name           string            `json:"name"`
	Endpoint       string            `json:"endpoint"`
	Bucket         string            `json:"bucket"`
	Region         string            `json:"region,omitempty"`
	Credentials    string            `json:"credentials_file,omitempty"`
	KeyFile        string            `json:"key_file,omitempty"`
	PassphraseFile string            `json:"passphrase_file,omitempty"`
	Registered     int               `json:"registered_immutable_days"`
	ImmutableDays  *int              `json:"immutable_days"`
	RetentionFrom  string            `json:"retention_from,omitempty"`
	Retention      *remote.Retention `json:"retention,omitempty"`
	LimitRate      int64             `json:"limit_rate"`
}

func newRemoteListRow(rc *remoteConfig, ret *remote.Retention) remoteListRow {
	r := remoteListRow{Name: rc.Name, Endpoint: rc.Endpoint, Bucket: rc.Bucket, Region: rc.Region, Credentials: rc.CredentialsFile,
		KeyFile: rc.KeyFile, PassphraseFile: rc.PassphraseFile, Registered: rc.ImmutableDays, Retention: ret, LimitRate: rc.LimitRate}
	switch {
	case ret != nil:
		d, src := ret.Days(rc.ImmutableDays)
		r.ImmutableDays, r.RetentionFrom = &d, src
	case rc.ImmutableDays > 0:
		d := rc.ImmutableDays
		r.ImmutableDays, r.RetentionFrom = &d, remote.RetentionRemote
	}
	return r
}

func printUnknownRetention(w io.Writer) {
	fmt.Fprintln(w, "unknown: added without --immutable-days and not checked yet; the bucket's Object Lock default or the remote's own retention may apply: cairn remote list --check asks each bucket (two requests per remote)")
}

// immutableLine is remote stats' word on immutability: cairn's own
// retention (renewed), else the bucket's default (applied by the store at
// each write, not renewed), else none.
func immutableLine(name string, st *remote.Stats) string {
	switch {
	case st.ImmutableDays > 0:
		return fmt.Sprintf("immutable: Object Lock COMPLIANCE retention of %s (renewed by replicate and cairn remote extend)", count(st.ImmutableDays, "day"))
	case st.Bucket != nil && st.Bucket.BucketDays > 0:
		return fmt.Sprintf("immutable: the bucket's default Object Lock retention (%s, %s) applies to every object cairn writes; cairn does not renew it, so an object still in use stays locked only that long after it was written (cairn remote remove %s, then add it again with --immutable-days N, to have cairn set and renew its own)",
			st.Bucket.BucketMode, count(st.Bucket.BucketDays, "day"), name)
	case st.Bucket == nil:
		return "immutable: no retention of cairn's own; the bucket's Object Lock configuration could not be read"
	case st.Bucket.ObjectLock:
		return "immutable: no (the bucket has Object Lock but no default retention, and the remote none of its own)"
	}
	return "immutable: no (no Object Lock retention)"
}
