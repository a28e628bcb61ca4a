package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/anomaly"
	"github.com/cairnbackup/cairn/backupd/serve"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/blockmap/remote"
	"github.com/cairnbackup/cairn/fusefs"
	"github.com/cairnbackup/cairn/internal/bytesize"
)

// remoteConfig is <repo>/remotes/<name>.json (0600). It names the files
// holding secrets; the secrets themselves are never stored or logged.
type remoteConfig struct {
	Name            string `json:"name"`
	Endpoint        string `json:"endpoint"`
	Bucket          string `json:"bucket"`
	Region          string `json:"region,omitempty"`
	CredentialsFile string `json:"credentials_file,omitempty"`
	KeyFile         string `json:"key_file,omitempty"`
	PassphraseFile  string `json:"passphrase_file,omitempty"`
	ImmutableDays   int    `json:"immutable_days,omitempty"`
	Insecure        bool   `json:"insecure,omitempty"`
	// PackSize overrides the default pack size (bytes; tests).
	PackSize int `json:"pack_size,omitempty"`
	// LimitRate caps every transfer of the remote, in bytes per second
	// (0: unlimited); a command's --limit-rate overrides it.
	LimitRate int64 `json:"limit_rate,omitempty"`
}

func remotesDir(repoDir string) string { return filepath.Join(repoDir, "remotes") }

func remoteConfigPath(repoDir, name string) string {
	return filepath.Join(remotesDir(repoDir), name+".json")
}

func loadRemoteConfig(repoDir, name string) (*remoteConfig, error) {
	if name == "" {
		return nil, errors.New("no remote given: use --remote NAME (cairn remote list shows them)")
	}
	if err := blockmap.ValidateName("remote", name); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(remoteConfigPath(repoDir, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, remoteNotConfigured(repoDir, name)
	}
	if err != nil {
		return nil, err
	}
	var rc remoteConfig
	if err := json.Unmarshal(data, &rc); err != nil {
		return nil, fmt.Errorf("remote %q: %s: %w", name, remoteConfigPath(repoDir, name), err)
	}
	return &rc, nil
}

// readSecretFile reads a file that holds a secret; it must not be readable
// by group or others.
func readSecretFile(kind, path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%s file: %w", kind, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s file %s is readable by others (mode %v): chmod 600 %s", kind, path, fi.Mode().Perm(), path)
	}
	return os.ReadFile(path)
}

// readCredentials reads an access key and secret key from an AWS-style
// credentials file (aws_access_key_id / aws_secret_access_key, the first
// profile) or from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
func readCredentials(path string) (string, string, error) {
	if path == "" {
		ak, sk := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
		if ak == "" || sk == "" {
			return "", "", errors.New("no credentials: give --credentials FILE when adding the remote, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
		}
		return ak, sk, nil
	}
	data, err := readSecretFile("credentials", path)
	if err != nil {
		return "", "", err
	}
	var ak, sk string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") && (ak != "" || sk != "") {
			break // only the first profile
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		switch k {
		case "aws_access_key_id", "access_key_id", "access_key":
			ak = v
		case "aws_secret_access_key", "secret_access_key", "secret_key":
			sk = v
		}
	}
	if ak == "" || sk == "" {
		return "", "", fmt.Errorf("credentials file %s: want aws_access_key_id = ... and aws_secret_access_key = ... lines", path)
	}
	return ak, sk, nil
}

// remoteOptions turns a remote's configuration into remote.Options,
// reading its credentials and key.
func (rc *remoteConfig) options() (remote.Options, error) {
	ak, sk, err := readCredentials(rc.CredentialsFile)
	if err != nil {
		return remote.Options{}, fmt.Errorf("remote %s: %w", rc.Name, err)
	}
	var secret []byte
	switch {
	case rc.KeyFile != "":
		if secret, err = readSecretFile("key", rc.KeyFile); err == nil && len(secret) < 16 {
			err = fmt.Errorf("key file %s holds %d bytes: want at least 16 (e.g. head -c 32 /dev/urandom > FILE)", rc.KeyFile, len(secret))
		}
	case rc.PassphraseFile != "":
		secret, err = readSecretFile("passphrase", rc.PassphraseFile)
		secret = bytes.TrimRight(secret, "\r\n")
		if err == nil && len(secret) == 0 {
			err = fmt.Errorf("passphrase file %s is empty", rc.PassphraseFile)
		}
	default:
		err = errors.New("no key: add the remote with --key-file FILE or --passphrase-file FILE")
	}
	if err != nil {
		return remote.Options{}, fmt.Errorf("remote %s: %w", rc.Name, err)
	}
	return remote.Options{
		Store:         remote.StoreOptions{Endpoint: rc.Endpoint, Bucket: rc.Bucket, Region: rc.Region, AccessKey: ak, SecretKey: sk, Insecure: rc.Insecure, Limiter: rc.limiter()},
		Secret:        secret,
		ImmutableDays: rc.ImmutableDays,
		PackSize:      rc.PackSize,
	}, nil
}

// optionsIn is options for a remote of the repository in repoDir: the
// master key is kept (sealed with the secret) in the remote's cache
// directory, so only the first open on this machine pays the argon2id
// derivation.
func (rc *remoteConfig) optionsIn(repoDir string) (remote.Options, error) {
	o, err := rc.options()
	// Only a key file's random bytes may seal the cached master key: a
	// passphrase could be guessed against the cache far faster than
	// against argon2id, so with one every command pays argon2id.
	if err == nil && rc.KeyFile != "" {
		o.KeyCache = filepath.Join(remoteCacheDir(repoDir, rc.Name), "key")
	}
	if err == nil {
		withWriter(&o, repoDir) // remote_writer.go
	}
	return o, err
}

// remoteAdvice adds what to do to the remote package's errors.
func remoteAdvice(rc *remoteConfig, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, remote.ErrOtherWriter):
		return fmt.Errorf("%w\n%s", err, otherWriterAdvice(rc, err))
	case errors.Is(err, remote.ErrKeyChanged):
		return fmt.Errorf("%w\nget the new key file or passphrase from whoever changed it and give it to this repository with: cairn remote rekey %s --new-key-file FILE (or --new-passphrase-file FILE)", err, rc.Name)
	case errors.Is(err, remote.ErrWrongKey):
		return fmt.Errorf("%w\nthe remote %s was initialized with another key file or passphrase; without it its data cannot be read\n%s", err, rc.Name, wrongKeyHint(rc))
	case errors.Is(err, remote.ErrAccessDenied):
		return fmt.Errorf("%w\ncheck the access key and secret key in %s and that they may use bucket %s", err, orEnv(rc.CredentialsFile), rc.Bucket)
	case errors.Is(err, remote.ErrNotInitialized):
		return fmt.Errorf("%w\nprepare the bucket with: cairn remote init %s", err, rc.Name)
	case errors.Is(err, remote.ErrNoObjectLock):
		return fmt.Errorf("%w\n--immutable-days needs a bucket created with Object Lock enabled (it cannot be switched on later on most stores): let cairn remote init create the bucket, or create it with e.g. aws s3api create-bucket --bucket %s --object-lock-enabled-for-bucket", err, rc.Bucket)
	case errors.Is(err, remote.ErrNotEmpty):
		return fmt.Errorf("%w\ncairn remote init wants an empty bucket: give another --bucket (cairn remote add) or empty this one", err)
	case errors.Is(err, remote.ErrAlreadyInitialized):
		return fmt.Errorf("%w\nthe bucket already holds a cairn remote: use it as it is (cairn points --remote %s)", err, rc.Name)
	case errors.Is(err, remote.ErrNoBucket):
		return fmt.Errorf("%w\n%s", err, noBucketAdvice(rc))
	case errors.Is(err, remote.ErrNoRetention):
		return fmt.Errorf("%w\nthe remote %s was added without --immutable-days and its bucket sets no default retention: there is nothing to extend", err, rc.Name)
	}
	var bs *remote.BlockSizeError
	if errors.As(err, &bs) {
		return fmt.Errorf("%w\npull into a repository of the remote's block size: cairn --repo DIR init --block-size %d", err, bs.Remote)
	}
	if a := unreachableAdvice(rc, err); a != "" {
		return fmt.Errorf("%w\n%s", err, a)
	}
	if a := tlsAdvice(rc, err); a != "" {
		return fmt.Errorf("%w\n%s", err, a)
	}
	return err
}

func orEnv(f string) string {
	if f == "" {
		return "$AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY"
	}
	return f
}

// withRemote opens the repository and the remote named by --remote, runs
// fn and closes both.
func withRemote(c *cli.Context, fn func(repo *blockmap.Repo, rem *remote.Remote, rc *remoteConfig) error) error {
	return withRemoteLocal(c, nil, fn)
}

// withRemoteLocal is withRemote with local preparation: local runs while
// the remote is opened (a GET of its config and, without a key cache,
// argon2id), and fn runs only when both succeeded. The cleanup local
// returns runs after fn (or when opening the remote failed).
func withRemoteLocal(c *cli.Context, local func(repo *blockmap.Repo, rc *remoteConfig) (func(), error), fn func(repo *blockmap.Repo, rem *remote.Remote, rc *remoteConfig) error) error {
	repo, err := openRepo(c)
	if err != nil {
		return err
	}
	defer repo.Close()
	rc, err := loadRemoteConfig(repo.Dir(), c.String("remote"))
	if err != nil {
		return err
	}
	o, err := rc.optionsFor(c, repo.Dir())
	if err != nil {
		return err
	}
	var (
		cleanup func()
		lerr    error
		done    = make(chan struct{})
	)
	go func() {
		defer close(done)
		if local != nil {
			start := time.Now()
			cleanup, lerr = local(repo, rc)
			slog.Debug("local side prepared", "took", time.Since(start))
		}
	}()
	rem, err := remote.Open(c.Context, o)
	<-done
	if cleanup != nil {
		defer cleanup()
	}
	if err != nil {
		return remoteAdvice(rc, err)
	}
	defer rem.Close()
	if lerr != nil {
		return lerr
	}
	return fn(repo, rem, rc)
}

// remotePointsOf lists a remote's points (of one VM when vm is not "").
func remotePointsOf(c *cli.Context, rem *remote.Remote, rc *remoteConfig, vm string) ([]blockmap.Point, []remote.BadObject, error) {
	pts, bad, err := rem.Points(c.Context)
	if err != nil {
		return nil, nil, remoteAdvice(rc, err)
	}
	if vm != "" {
		pts = filterVM(pts, vm)
	}
	return pts, bad, nil
}

func remoteCacheDir(repoDir, name string) string {
	return filepath.Join(remotesDir(repoDir), name+".cache")
}

var remoteFlag = &cli.StringFlag{Name: "remote", Usage: "the offsite remote `NAME` (see cairn remote add)"}

func remoteCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:  "remote",
			Usage: "offsite copies on an S3-compatible object store (see docs/remote.md)",
			Subcommands: append([]*cli.Command{
				{
					Name:      "add",
					Usage:     "register a remote for this repository",
					ArgsUsage: "NAME",
					Flags: []cli.Flag{
						&cli.StringFlag{Name: "endpoint", Usage: "the store's `URL`: https://host[:port] (http:// for a store on a trusted network)"},
						&cli.StringFlag{Name: "bucket", Usage: "bucket `NAME`"},
						&cli.StringFlag{Name: "region", Usage: "region (when the store needs one)"},
						&cli.StringFlag{Name: "credentials", Usage: "`FILE` (mode 0600) with aws_access_key_id and aws_secret_access_key; default $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY"},
						&cli.StringFlag{Name: "key-file", Usage: "`FILE` (mode 0600) whose bytes are the key; losing it loses the remote's data"},
						&cli.StringFlag{Name: "passphrase-file", Usage: "`FILE` (mode 0600) holding the passphrase; losing it loses the remote's data"},
						&cli.IntFlag{Name: "immutable-days", Usage: "write every object with an Object Lock COMPLIANCE retention of `N` days (the bucket needs Object Lock)"},
						&cli.BoolFlag{Name: "insecure", Usage: "do not verify the store's TLS certificate"},
						&cli.StringFlag{Name: "pack-size", Hidden: true, Usage: "pack `SIZE` (bytes, or 16M...; tests)"},
						&cli.StringFlag{Name: "limit-rate", Usage: "cap every transfer of this remote (replicate, pull, mount, restores) at `RATE` bytes per second by default: 50M, 800k, 1.5G or 100Mbit; a command's --limit-rate overrides it"},
					},
					Action: remoteAddAction,
				},
				{
					Name:      "init",
					Usage:     "prepare an empty bucket for the remote (creates the bucket when missing)",
					ArgsUsage: "NAME",
					Action: func(c *cli.Context) error {
						rc, o, err := remoteArg(c)
						if err != nil {
							return err
						}
						if err := remote.Init(c.Context, o); err != nil {
							return remoteAdvice(rc, err)
						}
						fmt.Printf("initialized remote %s (bucket %s", rc.Name, rc.Bucket)
						if rc.ImmutableDays > 0 {
							fmt.Printf(", Object Lock retention %s", count(rc.ImmutableDays, "day"))
						}
						fmt.Println(")")
						return nil
					},
				},
				{
					Name:   "list",
					Usage:  "list the repository's remotes",
					Flags:  remoteListFlags(),
					Action: remoteListAction, // remote_list.go
				},
				{
					Name:      "extend",
					Usage:     "renew the Object Lock retention of every object the remote's points still reference",
					ArgsUsage: "NAME",
					Action: func(c *cli.Context) error {
						if c.NArg() != 1 {
							return errors.New("remote extend: give the remote's NAME")
						}
						if err := c.Set("remote", c.Args().First()); err != nil {
							return err
						}
						return withRemote(c, func(repo *blockmap.Repo, rem *remote.Remote, _ *remoteConfig) error {
							st, err := rem.Extend(c.Context)
							if err != nil {
								return err
							}
							_ = writeExtendStamp(repo.Dir(), c.Args().First())
							fmt.Printf("%s referenced, %d retentions extended (%s)\n", count(st.Objects, "object"), st.Extended, count(st.Requests, "request"))
							return nil
						})
					},
					Flags: []cli.Flag{&cli.StringFlag{Name: "remote", Hidden: true}},
				},
				remoteLimitCommand(),
				remoteTakeoverCommand(), // remote_writer.go
				remoteShowCommand(),
			}, remoteManageCommands()...),
		},
		{
			Name:  "replicate",
			Usage: "copy recovery points the remote lacks to it",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "remote", Required: true, Usage: "remote `NAME`"},
				&cli.StringSliceFlag{Name: "vm", Usage: "only this VM (repeatable)"},
				&cli.StringFlag{Name: "point", Usage: "only this point (id, generation or latest; needs one --vm)"},
				limitRateFlag,
				jsonFlag(),
			},
			Action: replicateAction,
		},
		{
			Name:  "pull",
			Usage: "copy recovery points from a remote into this repository (disaster recovery)",
			Description: "Pulls the points oldest first; a point already in the repository is skipped. On a\n" +
				"terminal each disk being pulled shows a progress bar on stderr; every point pulled\n" +
				"prints its data, what of it was already here, the bytes downloaded and stored and\n" +
				"the time it took. A point of a VM whose newest point here was pulled from (or\n" +
				"replicated to) the remote downloads only the blocks that differ from it\n" +
				"(docs/remote.md, \"What a pull downloads\"). The run is recorded in the\n" +
				"repository's job log (cairn jobs).",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "remote", Required: true, Usage: "remote `NAME`"},
				&cli.StringSliceFlag{Name: "vm", Usage: "only this VM (repeatable)"},
				&cli.StringFlag{Name: "point", Usage: "only this point: id, generation number or latest (needs one --vm)"},
				limitRateFlag,
			},
			Action: pullAction,
		},
	}
}

// remoteArg loads the remote named by the first argument.
func remoteArg(c *cli.Context) (*remoteConfig, remote.Options, error) {
	if c.NArg() != 1 {
		return nil, remote.Options{}, errors.New("give the remote's NAME")
	}
	dir := c.String("repo")
	if dir == "" {
		return nil, remote.Options{}, errors.New("no repository given: use --repo DIR or set CAIRN_REPO")
	}
	rc, err := loadRemoteConfig(dir, c.Args().First())
	if err != nil {
		return nil, remote.Options{}, err
	}
	o, err := rc.options()
	return rc, o, err
}

func remoteAddAction(c *cli.Context) error {
	if c.NArg() < 1 {
		return errors.New("remote add: give the remote's NAME")
	}
	a, err := parseAfterName(c)
	if err != nil {
		return err
	}
	name := a.name
	if err := blockmap.ValidateName("remote", name); err != nil {
		return err
	}
	if a.String("endpoint") == "" || a.String("bucket") == "" {
		return errors.New("remote add: give --endpoint URL and --bucket NAME")
	}
	repo, err := openRepo(c)
	if err != nil {
		return err
	}
	defer repo.Close()
	abs := func(p string) string {
		if p == "" {
			return ""
		}
		a, err := filepath.Abs(p)
		if err != nil {
			return p
		}
		return a
	}
	rc := &remoteConfig{Name: name, Endpoint: a.String("endpoint"), Bucket: a.String("bucket"), Region: a.String("region"),
		CredentialsFile: abs(a.String("credentials")), KeyFile: abs(a.String("key-file")), PassphraseFile: abs(a.String("passphrase-file")),
		ImmutableDays: a.Int("immutable-days"), Insecure: a.Bool("insecure")}
	if v := a.String("pack-size"); v != "" {
		n, err := parseSizeFlag("remote add", "pack-size", v, 0, 1<<30)
		if err != nil {
			return err
		}
		rc.PackSize = int(n)
	}
	if (rc.KeyFile == "") == (rc.PassphraseFile == "") {
		return errors.New("remote add: give exactly one of --key-file FILE or --passphrase-file FILE")
	}
	if rc.ImmutableDays < 0 {
		return errors.New("remote add: --immutable-days must be positive")
	}
	if v := a.String("limit-rate"); v != "" {
		r, err := parseLimitRate("remote add: --limit-rate", v)
		if err != nil {
			return err
		}
		rc.LimitRate = int64(r)
	}
	if err := remote.CheckStore(rc.Endpoint, rc.Bucket); err != nil {
		return fmt.Errorf("remote add: %w", err)
	}
	if _, err := rc.options(); err != nil { // the files exist, are private and parse
		return err
	}
	path := remoteConfigPath(repo.Dir(), name)
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("remote %q already exists (%s): `cairn remote remove %s` first to replace it", name, path, name)
	}
	if err := writeRemoteConfig(repo.Dir(), rc); err != nil {
		return err
	}
	fmt.Printf("added remote %s: %s bucket %s\n", name, rc.Endpoint, rc.Bucket)
	return nil
}

// selectLocal picks the local points --vm/--point name (all by default).
func selectLocal(c *cli.Context, repo *blockmap.Repo) ([]blockmap.Point, error) {
	cat, err := repo.Catalog(c.Context)
	if err != nil {
		return nil, err
	}
	vms := c.StringSlice("vm")
	if c.String("point") != "" {
		if len(vms) != 1 {
			return nil, errors.New("--point needs exactly one --vm")
		}
		p, err := repo.ResolvePoint(c.Context, vms[0], c.String("point"))
		if err != nil {
			return nil, err
		}
		return []blockmap.Point{p}, nil
	}
	want := map[string]bool{}
	for _, v := range vms {
		want[v] = true
	}
	var pts []blockmap.Point
	found := map[string]bool{}
	for _, v := range cat {
		if len(want) > 0 && !want[v.Name] {
			continue
		}
		found[v.Name] = true
		pts = append(pts, v.Points...)
	}
	for v := range want {
		if !found[v] {
			return nil, fmt.Errorf("VM %q: %w: the repository has no recovery points for it", v, blockmap.ErrNotFound)
		}
	}
	return pts, nil
}

// extendEvery is how often replicate renews retentions: a quarter of the
// retention, so an object is renewed at least twice before it could expire.
func extendDue(repoDir, name string, days int) bool {
	data, err := os.ReadFile(filepath.Join(remoteCacheDir(repoDir, name), "extended"))
	if err != nil {
		return true
	}
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(string(data)))
	return err != nil || time.Since(t) > time.Duration(days)*6*time.Hour
}

func writeExtendStamp(repoDir, name string) error {
	dir := remoteCacheDir(repoDir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "extended"), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o600)
}

func replicateAction(c *cli.Context) error {
	var (
		pts []blockmap.Point
		st  *remote.ReplicateStats
	)
	end := startRemoteJob(c, backupd.JobReplicate)
	err := replicate(c, &pts, &st)
	end(err, func(r *backupd.JobRecord) { replicateRecord(r, pts, st) })
	return err
}

// replicate is cairn replicate; it leaves the points it chose in *ptsOut
// and what it did in *stOut for the job log.
func replicate(c *cli.Context, ptsOut *[]blockmap.Point, stOut **remote.ReplicateStats) error {
	var pts []blockmap.Point
	// The local points are listed and the remote's lock taken while the
	// remote is opened.
	local := func(repo *blockmap.Repo, rc *remoteConfig) (func(), error) {
		var err error
		if pts, err = selectLocal(c, repo); err != nil {
			return nil, err
		}
		*ptsOut = pts
		return lockRemote(repo.Dir(), rc.Name)
	}
	return withRemoteLocal(c, local, func(repo *blockmap.Repo, rem *remote.Remote, rc *remoteConfig) error {
		started := time.Now()
		st, err := rem.Replicate(c.Context, repo, pts, remote.ReplicateOptions{
			CacheDir: remoteCacheDir(repo.Dir(), rc.Name),
			Progress: func(p blockmap.Point) {
				if !c.Bool("json") {
					fmt.Printf("replicating %s %s\n", p.VM, p.ID)
				}
			},
		})
		*stOut = st
		if err != nil {
			if !errors.Is(err, remote.ErrNoObjectLock) && !errors.Is(err, remote.ErrOtherWriter) { // a second run fails alike: no resume advice
				err = fmt.Errorf("%w\nnothing half-written is visible on the remote; run cairn replicate again to resume (packs already stored are not uploaded again)", err)
			}
			return remoteAdvice(rc, err)
		}
		var ext *remote.ExtendStats
		// The remote's own retention (its config's, when this machine
		// added it without --immutable-days: a new machine after a disaster).
		days := rem.ImmutableDays()
		if days > 0 && extendDue(repo.Dir(), rc.Name, days) {
			if ext, err = rem.Extend(c.Context); err != nil {
				return fmt.Errorf("replicated, but extending retentions failed: %w (run cairn remote extend %s)", err, rc.Name)
			}
			_ = writeExtendStamp(repo.Dir(), rc.Name)
		}
		if c.Bool("json") {
			return printJSON(map[string]any{"stats": st, "extend": ext})
		}
		ratio := 0.0
		if st.PackBytes > 0 {
			ratio = float64(st.RawNew) / float64(st.PackBytes)
		}
		fmt.Printf("%s replicated, %d already there; read %s, %d of %s new (%s, %s after compression and encryption, %.2fx), %s, %s uploaded in %s\n",
			count(len(st.Replicated), "point"), len(st.Present), bytesize.IEC(st.BytesRead), st.BlocksNew, count(st.BlocksRead, "block"), bytesize.IEC(st.RawNew), bytesize.IEC(st.PackBytes), ratio,
			count(st.Packs, "pack"), bytesize.IEC(st.BytesUploaded), time.Since(started).Round(time.Millisecond))
		if ext != nil {
			fmt.Printf("retention: %s referenced, %d extended to %s\n", count(ext.Objects, "object"), ext.Extended, count(days, "day"))
		}
		return nil
	})
}

func pullAction(c *cli.Context) error {
	var rec backupd.JobRecord // what the pull did, for the job log
	end := startRemoteJob(c, backupd.JobPull)
	err := pull(c, &rec)
	end(err, func(r *backupd.JobRecord) {
		if rec.VMs != nil {
			r.SetVMs(rec.VMs)
		}
		r.Points, r.PointsPresent = rec.Points, rec.PointsPresent
		r.BytesDownloaded, r.BytesWritten = rec.BytesDownloaded, rec.BytesWritten
	})
	return err
}

// pull is cairn pull; it counts what it did in rec.
func pull(c *cli.Context, rec *backupd.JobRecord) error {
	return withRemote(c, func(repo *blockmap.Repo, rem *remote.Remote, rc *remoteConfig) error {
		pts, bad, err := remotePointsOf(c, rem, rc, "")
		if err != nil {
			return err
		}
		for _, b := range bad {
			fmt.Fprintf(os.Stderr, "warning: unreadable manifest %s: %s\n", b.Object, b.Err)
		}
		sel, err := selectPull(pts, rc.Name, c.StringSlice("vm"), c.String("point"))
		if err != nil {
			return err
		}
		sort.SliceStable(sel, func(i, j int) bool { return sel[i].Time.Before(sel[j].Time) })
		rec.SetVMs(pointVMs(sel))
		pulled := 0
		var damaged []string
		for _, p := range sel {
			started := time.Now()
			np, did, st, err := rem.PullWith(c.Context, repo, p.VM, p.ID, remote.PullOptions{Progress: pullProgress, CacheDir: remoteCacheDir(repo.Dir(), rc.Name)})
			rec.BytesDownloaded += st.BytesDownloaded
			if err != nil && pointDamaged(err) {
				// One damaged point must not keep the others from
				// coming back: say so and go on.
				fmt.Fprintf(os.Stderr, "FAILED %s %s: %v\n", p.VM, p.ID, err)
				damaged = append(damaged, p.VM+" "+p.ID)
				continue
			}
			if err != nil {
				return pullAdvice(rc, repo.Dir(), err, pulled)
			}
			if did {
				pulled++
				rec.Points++
				var stored int64
				for _, d := range np.Disks {
					stored += d.StoredBytes
				}
				rec.BytesWritten += stored
				fmt.Printf("pulled %s %s (generation %d): %s of data (%s already here), %s downloaded, %s stored in %s\n", np.VM, np.ID, np.Gen,
					bytesize.IEC(st.BytesData), bytesize.IEC(st.BytesLocal), bytesize.IEC(st.BytesDownloaded), bytesize.IEC(stored), time.Since(started).Round(time.Millisecond))
			} else {
				rec.PointsPresent++
				fmt.Printf("%s %s already in the repository\n", p.VM, p.ID)
			}
		}
		// A pull killed after it committed a point left that point's
		// session behind; this run found the point there and wrote
		// nothing, so it finishes the session itself.
		for _, vm := range pointVMs(sel) {
			if err := repo.FinishInterrupted(c.Context, vm); err != nil {
				slog.Warn("could not finish an interrupted write", "vm", vm, "error", err)
			}
		}
		fmt.Printf("%s pulled, %d already there", count(pulled, "point"), len(sel)-pulled-len(damaged))
		if len(damaged) > 0 {
			fmt.Printf(", %d damaged", len(damaged))
		}
		fmt.Println()
		return damagedPullError(rc.Name, damaged)
	})
}

func remotePointsAction(c *cli.Context) error {
	return withRemote(c, func(repo *blockmap.Repo, rem *remote.Remote, rc *remoteConfig) error {
		pts, bad, err := remotePointsOf(c, rem, rc, "")
		if err != nil {
			return err
		}
		if vm := c.String("vm"); vm != "" {
			if pts, err = remoteVMPoints(rc.Name, vm, pts, len(bad)); err != nil {
				return err
			}
		}
		if c.Bool("json") {
			return printJSON(serve.NewRemotePoints(rc.Name, pts, bad))
		}
		printRemotePoints(os.Stdout, rc.Name, pts, bad)
		return nil
	})
}

func remoteVerifyAction(c *cli.Context) error {
	end := startRemoteJob(c, backupd.JobVerifyRemote)
	err := remoteVerify(c)
	end(err, nil)
	return err
}

// remoteVerify is cairn verify --remote.
func remoteVerify(c *cli.Context) error {
	return withRemote(c, func(repo *blockmap.Repo, rem *remote.Remote, rc *remoteConfig) error {
		var pct float64
		if s := strings.TrimSuffix(c.String("sample"), "%"); s != "" {
			var err error
			if pct, err = strconv.ParseFloat(s, 64); err != nil || pct <= 0 || pct > 100 {
				return fmt.Errorf("--sample %q: want a percentage in (0, 100], e.g. 10%%", c.String("sample"))
			}
		}
		rep, err := rem.Verify(c.Context, remote.VerifyOptions{SamplePercent: pct})
		if err != nil {
			return remoteAdvice(rc, err)
		}
		if c.Bool("json") {
			if err := printJSON(rep); err != nil {
				return err
			}
		} else {
			for _, b := range rep.BadObjects {
				fmt.Printf("BAD OBJECT %s: %s\n", b.Object, b.Err)
			}
			for _, b := range rep.BadBlocks {
				fmt.Printf("BAD %s %s disk %s offset %d (pack %s): %s\n", b.VM, b.Point, b.Disk, b.Offset, b.Pack, b.Err)
			}
			for _, p := range rep.BadPoints {
				fmt.Printf("DAMAGED POINT %s\n", p)
			}
			fmt.Println(remoteVerifySummary(rc.Name, rep))
		}
		if !rep.OK() {
			return afterJSON(c.Bool("json"), cli.Exit(fmt.Sprintf("verify --remote: %s, %s", count(len(rep.BadBlocks), "bad block"), count(len(rep.BadObjects), "bad object")), 1))
		}
		return nil
	})
}

func remoteExportAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return fmt.Errorf("export: give exactly one OUT (a file path, or - for stdout)")
	}
	return withRemote(c, func(repo *blockmap.Repo, rem *remote.Remote, rc *remoteConfig) error {
		pts, _, err := remotePointsOf(c, rem, rc, c.String("vm"))
		if err != nil {
			return err
		}
		p, err := findRemotePoint(pts, rc.Name, c.String("vm"), c.String("point"))
		if err != nil {
			return err
		}
		dr, err := rem.OpenDisk(c.Context, p.VM, p.ID, c.String("disk"), 0)
		if err != nil {
			return err
		}
		defer dr.Close()
		var w io.Writer = os.Stdout
		if out := c.Args().First(); out != "-" {
			return exportRemoteFile(repo.Dir(), out, dr)
		}
		buf := make([]byte, 4<<20)
		for off := int64(0); off < dr.Size(); {
			n := min(int64(len(buf)), dr.Size()-off)
			if _, err := dr.ReadAt(buf[:n], off); err != nil && err != io.EOF {
				return err
			}
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			off += n
		}
		return nil
	})
}

func filterVM(pts []blockmap.Point, vm string) []blockmap.Point {
	var out []blockmap.Point
	for _, p := range pts {
		if p.VM == vm {
			out = append(out, p)
		}
	}
	return out
}

// afterName holds a command's flags given after its NAME argument
// (`cairn remote add NAME --endpoint URL ...`): urfave/cli stops parsing
// at the first argument, so the rest is parsed here with the command's
// own flag definitions.
type afterName struct {
	c    *cli.Context
	set  *flag.FlagSet
	seen map[string]bool
	name string
}

func parseAfterName(c *cli.Context) (*afterName, error) {
	a := &afterName{c: c, seen: map[string]bool{}, name: c.Args().First()}
	if c.NArg() <= 1 {
		return a, nil
	}
	set := flag.NewFlagSet(c.Command.Name, flag.ContinueOnError)
	set.SetOutput(io.Discard)
	for _, f := range c.Command.Flags {
		if err := f.Apply(set); err != nil {
			return nil, err
		}
	}
	if err := set.Parse(c.Args().Tail()); err != nil {
		return nil, fmt.Errorf("%s: %w", c.Command.FullName(), err)
	}
	if set.NArg() > 0 {
		return nil, fmt.Errorf("%s: unexpected argument %q (give one NAME)", c.Command.FullName(), set.Arg(0))
	}
	set.Visit(func(f *flag.Flag) { a.seen[f.Name] = true })
	a.set = set
	return a, nil
}

func (a *afterName) String(name string) string {
	if a.seen[name] {
		return a.set.Lookup(name).Value.String()
	}
	return a.c.String(name)
}

func (a *afterName) Int(name string) int {
	if a.seen[name] {
		n, _ := strconv.Atoi(a.set.Lookup(name).Value.String())
		return n
	}
	return a.c.Int(name)
}

func (a *afterName) Bool(name string) bool {
	if a.seen[name] {
		b, _ := strconv.ParseBool(a.set.Lookup(name).Value.String())
		return b
	}
	return a.c.Bool(name)
}

// lockRemote takes this machine's exclusive lock of a remote: replicate
// and prune of one remote never run at once from one appliance (a prune
// could delete a pack a running replication is about to reference).
func lockRemote(repoDir, name string) (func(), error) {
	dir := remoteCacheDir(repoDir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("remote %s is in use by another cairn replicate or prune on this machine (%s): wait for it to end", name, f.Name())
	}
	return func() { f.Close() }, nil
}

// remotePruneAction is prune and forget with --remote.
func remotePruneAction(c *cli.Context) error {
	return withRemote(c, func(repo *blockmap.Repo, rem *remote.Remote, rc *remoteConfig) error {
		unlock, err := lockRemote(repo.Dir(), rc.Name)
		if err != nil {
			return err
		}
		defer unlock()
		var rep *remote.PruneReport
		if c.Command.Name == "forget" {
			pts, _, err := remotePointsOf(c, rem, rc, c.String("vm"))
			if err != nil {
				return err
			}
			var sel []blockmap.Point
			for _, ref := range c.StringSlice("point") {
				p, err := findRemotePoint(pts, rc.Name, c.String("vm"), ref)
				if err != nil {
					return err
				}
				sel = append(sel, p)
			}
			rep, err = rem.Forget(c.Context, sel, c.Bool("dry-run"))
			if err != nil {
				return remoteAdvice(rc, err)
			}
		} else {
			pol := blockmap.Policy{KeepLast: c.Int("keep-last"), KeepHourly: c.Int("keep-hourly"), KeepDaily: c.Int("keep-daily"),
				KeepWeekly: c.Int("keep-weekly"), KeepMonthly: c.Int("keep-monthly")}
			// A VM with unacknowledged suspicious points keeps its last
			// clean one offsite too (verdicts from the manifests, acks local).
			if rep, err = rem.PruneWith(c.Context, c.String("vm"), pol, c.Bool("dry-run"), anomaly.Guard(repoAcks(repo.Dir()))); err != nil {
				return remoteAdvice(rc, err)
			}
		}
		if c.Bool("json") {
			if err := printJSON(rep); err != nil {
				return err
			}
			// forget --remote --json failed to say locked points were kept
			return afterJSON(true, forgetLockedError(c.Command.Name, rep))
		}
		verb := "deleted"
		if rep.DryRun {
			verb = "would delete"
		}
		for _, p := range rep.Deleted {
			fmt.Printf("%s %s %s\n", verb, p.VM, p.ID)
		}
		for _, p := range rep.Locked {
			fmt.Printf("locked %s %s until %s (Object Lock): kept\n", p.VM, p.ID, p.Until.UTC().Format(time.RFC3339))
		}
		printProtected(&blockmap.PruneResult{Protected: rep.Protected})
		fmt.Println(pruneSummary(rc.Name, rep, verb))
		return forgetLockedError(c.Command.Name, rep)
	})
}

// remoteSource shows a remote's points through the FUSE tree. Its catalog
// is read once at mount time (remount to see points replicated later).
type remoteSource struct {
	rem *remote.Remote
	cat []blockmap.VMSummary
}

func (s *remoteSource) Catalog(context.Context) ([]blockmap.VMSummary, error) {
	return s.cat, nil
}

// Attachment reads a point's attachment (vm/) from its manifest.
func (s *remoteSource) Attachment(ctx context.Context, p blockmap.Point, name string) ([]byte, error) {
	return s.rem.Attachment(ctx, p.VM, p.ID, name)
}
func (s *remoteSource) CatalogSeq() uint64 { return 1 }
func (s *remoteSource) CatalogState() (blockmap.CatalogState, error) {
	return blockmap.CatalogState{Seq: 1, Deleted: map[blockmap.PointRef]uint64{}}, nil
}
func (s *remoteSource) Dir() string    { return "" }
func (s *remoteSource) BlockSize() int { return blockmap.DefaultBlockSize }

func (s *remoteSource) OpenDisk(ctx context.Context, p blockmap.Point, disk string) (fusefs.Disk, error) {
	dr, err := s.rem.OpenDisk(ctx, p.VM, p.ID, disk, 0)
	if err != nil {
		return nil, err
	}
	return dr, nil
}

// mountRemote mounts the remote named by --remote at dir.
func mountRemote(c *cli.Context, dir string, opts fusefs.Options) error {
	size, err := parseSizeFlag("mount", "cache-size", c.String("cache-size"), 1<<20, 0)
	if err != nil {
		return err
	}
	return withRemote(c, func(_ *blockmap.Repo, rem *remote.Remote, rc *remoteConfig) error {
		pts, bad, err := remotePointsOf(c, rem, rc, "")
		if err != nil {
			return err
		}
		for _, b := range bad {
			slog.Warn("unreadable remote manifest; its point is not shown", "object", b.Object, "err", b.Err)
		}
		rem.SetReadCache(int(size))
		// The tree names points by VM and generation; generations come
		// from whichever repository replicated a point, so number each
		// VM's points by time here.
		src := &remoteSource{rem: rem}
		for _, p := range pts {
			if n := len(src.cat); n == 0 || src.cat[n-1].Name != p.VM {
				src.cat = append(src.cat, blockmap.VMSummary{Name: p.VM})
			}
			v := &src.cat[len(src.cat)-1]
			p.Gen = uint32(len(v.Points) + 1)
			v.Points = append(v.Points, p)
		}
		srv, err := fusefs.MountSource(c.Context, src, dir, opts)
		if err != nil {
			return err
		}
		slog.Info("mounted the remote; stop with Ctrl-C or `cairn umount "+srv.Dir()+"`", "remote", rc.Name, "dir", srv.Dir(), "points", len(pts))
		return serveMount(c, srv)
	})
}
