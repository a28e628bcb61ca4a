package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/backupd/serve"
	"github.com/cairnbackup/cairn/blockmap/remote"
)

// One writer per remote (blockmap/remote/writer.go): this repository's
// writer id, the advice when another appliance holds a remote, cairn
// remote takeover, and the recovery sheet of cairn remote show
// --for-recovery.

// writerIDFile keeps the repository's writer id. It is not a remote's
// registration (those are NAME.json) and not in a cache: deleting a cache
// must not make this appliance a stranger to its own remotes.
func writerIDFile(repoDir string) string { return filepath.Join(remotesDir(repoDir), "writer-id") }

// applianceWriter is this repository as the writer of its remotes; the
// id is made (random) the first time it is needed. A repository copied
// whole to a new machine keeps its id (it is the same appliance, moved);
// one made by cairn init (disaster recovery) gets a new one.
func applianceWriter(repoDir string) (*remote.Writer, error) {
	abs, err := filepath.Abs(repoDir)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	w := &remote.Writer{Host: host, Repo: abs}
	data, err := os.ReadFile(writerIDFile(repoDir))
	if err == nil {
		if w.ID = strings.TrimSpace(string(data)); w.ID != "" {
			return w, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var b [16]byte
	if _, err := io.ReadFull(rand.Reader, b[:]); err != nil {
		return nil, err
	}
	w.ID = hex.EncodeToString(b[:])
	if err := os.MkdirAll(remotesDir(repoDir), 0o700); err != nil {
		return nil, err
	}
	tmp := writerIDFile(repoDir) + ".tmp"
	if err := os.WriteFile(tmp, []byte(w.ID+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, writerIDFile(repoDir)); err != nil {
		return nil, err
	}
	return w, nil
}

// withWriter sets o.Writer to this repository. A repository this user
// cannot write (a reader of another user's repository) gets none: it only
// reads the remote, and replicate or prune fail on the repository first.
func withWriter(o *remote.Options, repoDir string) {
	w, err := applianceWriter(repoDir)
	if err != nil {
		slog.Debug("no writer id for this repository", "repo", repoDir, "err", err)
		return
	}
	o.Writer = w
}

// otherWriterAdvice follows ErrOtherWriter.
func otherWriterAdvice(rc *remoteConfig, err error) string {
	var ow *remote.OtherWriterError
	owner := "another appliance"
	if errors.As(err, &ow) {
		owner = ow.Owner.String()
	}
	return fmt.Sprintf("remote %s is written by %s, not by this repository: two appliances that replicate to and prune one remote delete each other's data (a prune of one removes packs the other is about to reference).\n"+
		"if that appliance is gone for good (disaster recovery) or this repository replaces it, run here: cairn remote takeover %s (its replicate and prune are refused from then on);\n"+
		"if it still runs and should keep the remote, stop replicating to %s here (remove replicate: from this machine's serve jobs), or give this appliance a bucket of its own (cairn remote add ... --bucket NEW; cairn remote init)",
		rc.Name, owner, rc.Name, rc.Name)
}

func remoteTakeoverCommand() *cli.Command {
	return &cli.Command{
		Name:      "takeover",
		Usage:     "make this repository the remote's writer (after a disaster: the old appliance is gone)",
		ArgsUsage: "NAME",
		Description: "One appliance writes a remote (replicate, prune, forget); the bucket's cairn/writer\n" +
			"names it, and the first replication claims an unclaimed remote. takeover moves the\n" +
			"claim to this repository: run it on a new appliance rebuilt from the remote once the\n" +
			"old one is gone or stopped for good. From then on the old appliance's replicate and\n" +
			"prune of the remote are refused, naming this one. Nothing else in the bucket changes.",
		Action: func(c *cli.Context) error {
			_, dir, rc, err := remoteByName(c, "takeover")
			if err != nil {
				return err
			}
			o, err := rc.optionsIn(dir)
			if err != nil {
				return err
			}
			if o.Writer == nil {
				w, werr := applianceWriter(dir)
				if werr != nil {
					return fmt.Errorf("remote takeover: this repository's writer id (%s): %w", writerIDFile(dir), werr)
				}
				o.Writer = w
			}
			rem, err := remote.Open(c.Context, o)
			if err != nil {
				return remoteAdvice(rc, err)
			}
			defer rem.Close()
			prev, err := rem.TakeOver(c.Context)
			if err != nil {
				return remoteAdvice(rc, err)
			}
			switch {
			case prev == nil:
				fmt.Printf("remote %s: this appliance (%s) writes it now; it had no writer before\n", rc.Name, o.Writer)
			case prev.ID == o.Writer.ID:
				fmt.Printf("remote %s: already written by this appliance (%s)\n", rc.Name, prev)
			default:
				fmt.Printf("remote %s: this appliance (%s) writes it now, in place of %s: that appliance's replicate and prune of it are refused from now on\n", rc.Name, o.Writer, prev)
			}
			return nil
		},
	}
}

func remoteShowCommand() *cli.Command {
	return &cli.Command{
		Name:      "show",
		Usage:     "show a remote's registration; --for-recovery: what to keep offsite to rebuild this appliance from it",
		ArgsUsage: "NAME [--for-recovery]",
		Description: "--for-recovery prints a recovery sheet: the endpoint, bucket, region, the credentials\n" +
			"and key files to copy, the repository's block size, the serve config and the vCenter\n" +
			"credentials files its jobs use, and the commands that rebuild the appliance and drill\n" +
			"a recovery. It holds no secret: keep it with copies of the files it names somewhere\n" +
			"that does not burn with this appliance. Asks nothing of the store.",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "for-recovery", Usage: "print the recovery sheet"}},
		Action: func(c *cli.Context) error {
			a, dir, rc, err := remoteByName(c, "show")
			if err != nil {
				return err
			}
			if !a.Bool("for-recovery") {
				return printJSON(rc)
			}
			fmt.Print(recoverySheet(dir, rc))
			return nil
		},
	}
}

// recoverySheet is what an administrator keeps outside the appliance to
// rebuild it from remote rc (docs/remote.md, "Disaster recovery").
func recoverySheet(repoDir string, rc *remoteConfig) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	abs, _ := filepath.Abs(repoDir)
	host, _ := os.Hostname()
	p("# cairn recovery sheet: remote %s of repository %s on host %s", rc.Name, abs, host)
	p("# Keep this sheet and a copy of every FILE it names outside this appliance (a safe, a")
	p("# password manager, a second site). Without the key the remote cannot be read by anyone.")
	p("")
	p("endpoint:        %s", rc.Endpoint)
	p("bucket:          %s", rc.Bucket)
	if rc.Region != "" {
		p("region:          %s", rc.Region)
	}
	if rc.Insecure {
		p("insecure:        yes (the store's TLS certificate is not verified)")
	}
	p("credentials:     %s   (COPY: an access key that may read and write the bucket)", orEnv(rc.CredentialsFile))
	if rc.KeyFile != "" {
		p("key file:        %s   (COPY: its exact bytes are the key)", rc.KeyFile)
	} else {
		p("passphrase file: %s   (COPY, or write the passphrase down: it is the key)", rc.PassphraseFile)
	}
	if rc.ImmutableDays > 0 {
		p("retention:       %s under Object Lock (kept by the bucket's cairn/config too)", count(rc.ImmutableDays, "day"))
	}
	if bs := repoBlockSize(repoDir); bs > 0 {
		p("block size:      %d bytes (cairn init --block-size %d on the new appliance)", bs, bs)
	}
	var vcs []serve.VCenter
	if sf, err := serve.ReadServeFile(repoDir); err == nil && sf.Config != "" {
		p("serve config:    %s   (COPY: the jobs, retention and replication schedules)", sf.Config)
		if cfg, err := serve.LoadConfig(sf.Config); err == nil {
			vcs = cfg.VCenters
		}
	} else {
		p("serve config:    (no cairn serve runs on this repository now; COPY its cairn.yaml if one is used)")
	}
	for _, vc := range vcs {
		p("vcenter %s:  %s thumbprint %s, credentials %s   (COPY)", vc.Name, vc.URL, vc.Thumbprint, vc.Credentials)
	}
	name := rc.Name
	key := "--key-file KEYFILE"
	if rc.KeyFile == "" {
		key = "--passphrase-file PASSFILE"
	}
	p("")
	p("# Rebuild (a new appliance; the files above copied back, mode 0600):")
	bsFlag := ""
	if bs := repoBlockSize(repoDir); bs > 0 {
		bsFlag = fmt.Sprintf(" --block-size %d", bs)
	}
	region := ""
	if rc.Region != "" {
		region = " --region " + rc.Region
	}
	p("cairn --repo /srv/cairn init%s", bsFlag)
	p("cairn --repo /srv/cairn remote add %s --endpoint %s --bucket %s%s --credentials CREDFILE %s", name, rc.Endpoint, rc.Bucket, region, key)
	p("cairn --repo /srv/cairn points --remote %s          # every VM and point", name)
	p("cairn --repo /srv/cairn pull --remote %s            # or --vm V --point latest first", name)
	p("cairn --repo /srv/cairn remote takeover %s          # only once this appliance is gone for good", name)
	p("cairn serve --config cairn.yaml                        # the old jobs: backups go on from the pulled points")
	p("")
	p("# Drill (any time, production untouched: a scratch repository, read-only on the remote):")
	p("cairn --repo /tmp/drill init%s", bsFlag)
	p("cairn --repo /tmp/drill remote add %s --endpoint %s --bucket %s%s --credentials CREDFILE %s", name, rc.Endpoint, rc.Bucket, region, key)
	p("cairn --repo /tmp/drill verify --remote %s --sample 5%%", name)
	p("cairn --repo /tmp/drill pull --remote %s --vm VM --point latest && cairn --repo /tmp/drill verify", name)
	p("rm -r /tmp/drill")
	return b.String()
}

// repoBlockSize reads the repository's block size from its cairn.json
// (0 when unknown), without opening the repository.
func repoBlockSize(repoDir string) int {
	data, err := os.ReadFile(filepath.Join(repoDir, "cairn.json"))
	if err != nil {
		return 0
	}
	var m struct {
		BlockSize int `json:"block_size"`
	}
	if json.Unmarshal(data, &m) != nil {
		return 0
	}
	return m.BlockSize
}
