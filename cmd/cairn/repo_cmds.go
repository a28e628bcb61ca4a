package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/backupd/anomaly"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/bytesize"
)

func repoCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:      "init",
			Usage:     "create a repository",
			ArgsUsage: " ",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "block-size", Value: bytesize.Short(blockmap.DefaultBlockSize), Usage: "block size: a power of two from 64k to 1M, in bytes or with a 1024-based suffix (65536, 64k, 256KiB, 1M; see docs/repository.md)"},
				&cli.StringFlag{Name: "hash", Value: blockmap.HashBLAKE3, Usage: "block hash: blake3 or sha256 (see docs/repository.md)"},
			},
			Action: func(c *cli.Context) error {
				dir := c.String("repo")
				if c.NArg() > 0 {
					if dir == "" {
						return fmt.Errorf("init: the repository is given with --repo, not as an argument: run `cairn --repo %s init`", c.Args().First())
					}
					return fmt.Errorf("init: unexpected argument %q: the repository is --repo %s", c.Args().First(), dir)
				}
				if dir == "" {
					return fmt.Errorf("init: no repository given: use --repo DIR or set CAIRN_REPO")
				}
				bs, err := parseBlockSize(c.String("block-size"))
				if err != nil {
					return err
				}
				if err := blockmap.Init(c.Context, dir, blockmap.InitOptions{BlockSize: bs, Hash: c.String("hash")}); err != nil {
					return err
				}
				fmt.Printf("created repository %s (block size %s, block hash %s)\n", dir, bytesize.IEC(int64(bs)), c.String("hash"))
				// The reserve is the one surprise in an empty repository's du.
				if fi, err := os.Stat(dir + "/" + blockmap.ReserveFileName); err == nil {
					fmt.Printf("%s of it is %s/%s, space kept free for prune and forget on a full filesystem (docs/repository.md)\n",
						bytesize.IEC(fi.Size()), dir, blockmap.ReserveFileName)
				}
				return nil
			},
		},
		importCommand(),
		{
			Name:  "points",
			Usage: "list VMs and their recovery points",
			Flags: []cli.Flag{
				onlyVMFlag(),
				jsonFlag(),
				remoteFlag,
				&cli.BoolFlag{Name: "suspicious", Usage: "list only every VM's unacknowledged suspicious points and its last clean point (site-wide triage)"},
			},
			Action:      pointsAction,
			Subcommands: []*cli.Command{pointsAckCommand()},
		},
		{
			Name:      "export",
			Usage:     "write a disk of a recovery point as a sparse raw image",
			ArgsUsage: "OUT (a file, a block device, or - for stdout)",
			Description: "A file is written sparse (the point's holes stay holes) and truncated to the disk's\n" +
				"size. A block device (a disk, a LUN, /dev/loopN) gets the disk written over it: data,\n" +
				"and zeros for the holes; a device smaller than the disk, or mounted, is refused before\n" +
				"anything is written, and bytes past the disk's size are left alone. A FIFO or a\n" +
				"character device gets the whole stream. A file is written beside OUT (.OUT.cairn-partial)\n" +
				"and renamed to OUT only when complete: a failed or killed export leaves a file that\n" +
				"was at OUT as it was, and never touches a device or a FIFO.",
			Flags: []cli.Flag{
				vmFlag(),
				pointFlag(),
				diskFlag(),
				remoteFlag, limitRateFlag,
			},
			Action: exportAction,
		},
		{
			Name:  "verify",
			Usage: "re-read every stored block and check its hash; check every point's block map in the index",
			Description: "Prints each bad block (BAD ...) and each finding of the consistency check (PROBLEM ...), and says which\n" +
				"findings are leftovers of an interrupted write, prune or forget (harmless; the next backup, import, prune or\n" +
				"forget of the VM removes them) and which are damage.\n\n" +
				"Exit status: 0 every block checked matches its hash and nothing is damaged (leftovers may be listed);\n" +
				"1 bad blocks or damage, or verify could not run (docs/repository.md, Verify; with --remote: docs/remote.md).",
			Flags: []cli.Flag{
				onlyVMFlag(),
				&cli.StringFlag{Name: "point", Usage: "only blocks this point reads (needs --vm)"},
				jsonFlag(),
				remoteFlag,
				&cli.StringFlag{Name: "sample", Usage: "with --remote: read only `P%` of the packs, chosen at random"},
				&cli.BoolFlag{Name: "against-source", Usage: "compare the latest point with the VM itself instead (runs `cairn verify-source`; give its --vcenter, --vm, ... flags)"},
			},
			Action: verifyAction,
		},
		{
			Name:  "prune",
			Usage: "delete recovery points outside a retention policy (never copies data)",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "vm", Usage: "only this VM (default: every VM)"},
				&cli.IntFlag{Name: "keep-last", Usage: "keep the newest N points"},
				&cli.IntFlag{Name: "keep-hourly", Usage: "keep the newest point of each of the N most recent hours that have points (UTC; not counted back from now)"},
				&cli.IntFlag{Name: "keep-daily", Usage: "keep the newest point of each of the N most recent days that have points (UTC; not counted back from now)"},
				&cli.IntFlag{Name: "keep-weekly", Usage: "keep the newest point of each of the N most recent weeks that have points (UTC; not counted back from now)"},
				&cli.IntFlag{Name: "keep-monthly", Usage: "keep the newest point of each of the N most recent months that have points (UTC; not counted back from now)"},
				&cli.BoolFlag{Name: "dry-run", Usage: "only say what would be deleted"},
				jsonFlag(),
				remoteFlag,
			},
			Action: pruneAction,
		},
		{
			Name:  "forget",
			Usage: "delete recovery points of a VM",
			Flags: []cli.Flag{
				vmFlag(),
				&cli.StringSliceFlag{Name: "point", Required: true, Usage: "point id, generation number or latest (repeatable)"},
				&cli.BoolFlag{Name: "dry-run", Usage: "only say what would be deleted"},
				jsonFlag(),
				remoteFlag,
			},
			Action: func(c *cli.Context) error {
				if c.String("remote") != "" {
					return remotePruneAction(c)
				}
				repo, err := openRepo(c)
				if err != nil {
					return err
				}
				defer repo.Close()
				res, err := repo.Forget(c.Context, c.String("vm"), c.StringSlice("point"), c.Bool("dry-run"))
				if err != nil {
					return deletionResult(func() error { return printPrune(c, res) }, err)
				}
				return printPrune(c, res)
			},
		},
	}
}

// pruneAction is `cairn prune` (negative counts are refused before it
// runs: flagcheck.go). Without --vm it prunes every VM in one index
// update: a VM that another process holds (a running import or backup)
// is reported and skipped, the others are pruned, and the exit status is 1.
func pruneAction(c *cli.Context) error {
	if c.String("remote") != "" {
		return remotePruneAction(c)
	}
	repo, err := openRepo(c)
	if err != nil {
		return err
	}
	defer repo.Close()
	pol := blockmap.Policy{KeepLast: c.Int("keep-last"), KeepHourly: c.Int("keep-hourly"), KeepDaily: c.Int("keep-daily"),
		KeepWeekly: c.Int("keep-weekly"), KeepMonthly: c.Int("keep-monthly")}
	// A VM with unacknowledged suspicious points keeps its last clean one.
	guard := anomaly.Guard(repoAcks(repo.Dir()))
	if vm := c.String("vm"); vm != "" {
		res, err := repo.PruneWith(c.Context, vm, pol, c.Bool("dry-run"), guard)
		if err != nil {
			return deletionResult(func() error { return printPrune(c, res) }, err)
		}
		return printPrune(c, res)
	}
	if err := pol.Validate(); err != nil {
		return err
	}
	if pol.IsZero() {
		return errors.New("prune: give at least one of --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly (without a rule every point would go)")
	}
	// One call for every VM: their deletions share one index update.
	res, err := repo.PruneWith(c.Context, "", pol, c.Bool("dry-run"), guard)
	if res == nil {
		return err
	}
	var busy []string
	if len(res.Busy) > 0 && errors.Is(err, blockmap.ErrInUse) {
		var each interface{ Unwrap() []error }
		if errors.As(err, &each) {
			for _, e := range each.Unwrap() {
				fmt.Fprintf(os.Stderr, "cairn: skipped: %v\n", e)
			}
		}
		busy, err = res.Busy, nil
	}
	if err != nil {
		return deletionResult(func() error { return printPrune(c, res) }, err)
	}
	if err := printPrune(c, res); err != nil {
		return err
	}
	if len(busy) > 0 {
		return afterJSON(c.Bool("json"), cli.Exit(fmt.Sprintf("prune: %d VMs in use were not pruned (%s); run cairn prune again when they are free", len(busy), strings.Join(busy, ", ")), 1))
	}
	return nil
}

func printPrune(c *cli.Context, res *blockmap.PruneResult) error {
	if c.Bool("json") {
		// Empty lists, not null (nothing deleted, or nothing kept).
		out := *res
		if out.Kept == nil {
			out.Kept = []blockmap.Point{}
		}
		if out.Deleted == nil {
			out.Deleted = []blockmap.Point{}
		}
		return printJSON(&out)
	}
	verb := "deleted"
	if res.DryRun {
		verb = "would delete"
	}
	for _, p := range res.Deleted {
		fmt.Printf("%s %s %s (generation %d)\n", verb, p.VM, p.ID, p.Gen)
	}
	printProtected(res)
	fmt.Printf("%s %s, %d kept", count(len(res.Deleted), "point"), passive(verb), len(res.Kept))
	if !res.DryRun {
		fmt.Printf(", %d block versions removed, %s released, %d delta images deleted", res.VersionsDeleted, bytesize.IEC(res.BytesReleased), res.ImagesDeleted)
	}
	fmt.Println()
	return nil
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// pointsJSON is the shape of `cairn points --json`.
type pointsJSON struct {
	VMs    []blockmap.VMSummary `json:"vms"`
	Totals pointsTotals         `json:"totals"`
}

type pointsTotals struct {
	VMs         int   `json:"vms"`
	Points      int   `json:"points"`
	StoredBytes int64 `json:"stored_bytes"`
	// RepoBytes is the space the repository's files occupy on disk.
	RepoBytes int64 `json:"repository_bytes"`
}

func pointsAction(c *cli.Context) error {
	if c.Bool("suspicious") {
		return pointsSuspiciousAction(c, os.Stdout)
	}
	if c.String("remote") != "" {
		return remotePointsAction(c)
	}
	repo, cat, err := openPointsOf(c, c.String("vm"))
	if err != nil {
		return err
	}
	defer repo.Close()
	out := pointsJSON{VMs: cat}
	if out.VMs == nil {
		out.VMs = []blockmap.VMSummary{}
	}
	out.Totals.VMs = len(cat)
	for _, v := range cat {
		out.Totals.Points += len(v.Points)
		for _, p := range v.Points {
			out.Totals.StoredBytes += p.StoredBytes()
		}
	}
	out.Totals.RepoBytes = allocatedBytes(repo.Dir())
	if c.Bool("json") {
		return printPointsJSON(os.Stdout, repo.Dir(), cat, out.Totals)
	}
	if len(cat) == 0 {
		fmt.Println("no recovery points yet: make one with `cairn backup` (vSphere VMs) or `cairn import` (images, devices, NBD exports)")
		fmt.Printf("total: 0 VMs, 0 points, %s on disk\n", bytesize.IEC(out.Totals.RepoBytes))
		return nil
	}
	if err := printPointsTable(os.Stdout, repo.Dir(), cat); err != nil {
		return err
	}
	printSuspicious(os.Stdout, cat, repoAcks(repo.Dir()))
	fmt.Printf("total: %d VMs, %d points, %s stored by points, %s on disk\n", out.Totals.VMs, out.Totals.Points,
		bytesize.IEC(out.Totals.StoredBytes), bytesize.IEC(out.Totals.RepoBytes))
	return nil
}

// openPointsOf opens the repository and reads the catalog, or with vm
// only that VM's points (not every VM's).
func openPointsOf(c *cli.Context, vm string) (*blockmap.Repo, []blockmap.VMSummary, error) {
	if vm == "" {
		return openCatalog(c)
	}
	repo, err := openRepo(c)
	if err != nil {
		return nil, nil, err
	}
	pts, err := repo.Points(c.Context, vm)
	var nf *blockmap.PointNotFoundError
	if errors.As(err, &nf) {
		err = fmt.Errorf("VM %q: %w: the repository has no recovery points for it", vm, blockmap.ErrNotFound)
	}
	if err != nil {
		repo.Close()
		return nil, nil, err
	}
	return repo, []blockmap.VMSummary{{Name: vm, Points: pts}}, nil
}

// allocatedBytes sums the allocated size of the files under dir.
func allocatedBytes(dir string) int64 {
	var total int64
	var walk func(string)
	walk = func(d string) {
		entries, err := os.ReadDir(d)
		if err != nil {
			return
		}
		for _, e := range entries {
			p := d + "/" + e.Name()
			if e.IsDir() {
				walk(p)
				continue
			}
			var st unix.Stat_t
			if unix.Lstat(p, &st) == nil {
				total += st.Blocks * 512
			}
		}
	}
	walk(dir)
	return total
}

func exportAction(c *cli.Context) error {
	if c.String("remote") != "" {
		return remoteExportAction(c)
	}
	if c.NArg() != 1 {
		return fmt.Errorf("export: give exactly one OUT (a file path, or - for stdout)")
	}
	out := c.Args().First()
	if out == "-" {
		if err := refuseStdoutInsideRepo(c.String("repo")); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	} else if err := refuseInsideRepo(c.String("repo"), out, "output"); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	repo, _, dr, err := openLocalDisk(c)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer repo.Close()
	defer dr.Close()
	bar := newProgressBar(c.String("disk"), dr.DataBytes())
	defer bar.Finish()
	if out == "-" {
		if fi, err := os.Stdout.Stat(); err == nil && fi.Mode().IsRegular() {
			return dr.ExportSparse(c.Context, os.Stdout, nil)
		}
		return dr.ExportStream(c.Context, os.Stdout, nil)
	}
	if fi, err := os.Stat(out); err == nil && !fi.Mode().IsRegular() {
		var done int64
		return exportToSpecial(c.Context, out, fi.Mode(), dr, func(d int64) { bar.Add(d - done); done = d })
	}
	// A VM's disk: private, like the repository; complete at OUT or not there.
	f, err := createOutput(out, 0o600)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	var done int64
	err = dr.ExportSparse(c.Context, f.File, func(d int64) { bar.Add(d - done); done = d })
	if err != nil {
		f.abort()
		return err
	}
	if err := f.commit(true); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

func verifyAction(c *cli.Context) error {
	if err := checkVerifyFlags(c.String("remote"), c.String("sample"), c.String("vm"), c.String("point")); err != nil {
		return err
	}
	if c.String("point") != "" && c.String("vm") == "" && c.String("remote") == "" {
		return fmt.Errorf("verify: --point %s needs --vm NAME, the point's VM (cairn points lists them)", c.String("point"))
	}
	if c.String("remote") != "" {
		return remoteVerifyAction(c)
	}
	repo, err := openRepo(c)
	if err != nil {
		return err
	}
	defer repo.Close()
	bar := newProgressBar("verify", 0)
	rep, err := repo.Verify(c.Context, blockmap.VerifyOptions{VM: c.String("vm"), Point: c.String("point"),
		Progress: func(done, total int64) { bar.total = total; bar.done.Store(done) }})
	bar.Finish()
	if err != nil {
		return err
	}
	problems, err := repo.Check(c.Context)
	if err != nil {
		return err
	}
	loose, err := repo.LooseModes()
	if err != nil {
		fmt.Fprintf(os.Stderr, "cairn: WARNING: cannot check the repository's file modes: %v\n", err)
	}
	warnLooseModes(repo.Dir(), loose)
	if c.String("vm") == "" {
		warnFilledHoles(c, repo)
	}
	if c.Bool("json") {
		// Empty lists, not null: a script iterates them without a check.
		if rep.Bad == nil {
			rep.Bad = []blockmap.BadBlock{}
		}
		if problems == nil {
			problems = []string{}
		}
		if loose == nil {
			loose = []string{}
		}
		if err := printJSON(map[string]any{"report": rep, "problems": problems, "loose_modes": loose}); err != nil {
			return err
		}
	} else {
		for _, b := range rep.Bad {
			fmt.Println(b.String())
		}
		for _, p := range problems {
			fmt.Println("PROBLEM", p)
		}
		fmt.Printf("checked %d blocks (%s): %d bad, %d other problems\n", rep.Blocks, bytesize.IEC(rep.Bytes), len(rep.Bad), len(problems))
		explainProblems(problems)
	}
	if !rep.OK() {
		return afterJSON(c.Bool("json"), cli.Exit(fmt.Sprintf("verify: %d bad blocks", len(rep.Bad)), 1))
	}
	if n := countDamage(problems); n > 0 {
		return cli.Exit(fmt.Sprintf("verify: %d problems are damage of the repository", n), 1)
	}
	return nil
}

// countDamage counts the problems of blockmap's Check that are damage.
func countDamage(problems []string) int {
	n := 0
	for _, p := range problems {
		if blockmap.CheckDamage(p) {
			n++
		}
	}
	return n
}

// explainProblems says which of verify's other problems are harmless
// leftovers (and what removes them) and which are damage (exit 1).
func explainProblems(problems []string) {
	damage := countDamage(problems)
	if left := len(problems) - damage; left > 0 {
		fmt.Printf("%d of them are leftovers of an interrupted write, prune or forget: harmless to every point; "+
			"the next backup, import, prune or forget of the VM removes them (an open session of a writer still running ends with it)\n", left)
	}
	if damage > 0 {
		fmt.Printf("%d of them are damage of the repository (data or index lost; no write repairs it): "+
			"the points it touches read wrong or not at all: restore them from an offsite copy (docs/remote.md) or forget them (docs/repository.md, Verify)\n", damage)
	}
}

// warnLooseModes tells on stderr which repository paths other users may
// read (backup data must be private to the repository's owner) and how
// to fix them.
func warnLooseModes(dir string, loose []string) {
	if len(loose) == 0 {
		return
	}
	fmt.Fprintf(os.Stderr, "cairn: WARNING: %d paths of the repository are open to other users (want 0600 files, 0700 directories):\n", len(loose))
	for i, p := range loose {
		if i == 20 {
			fmt.Fprintf(os.Stderr, "  ... and %d more\n", len(loose)-i)
			break
		}
		fmt.Fprintf(os.Stderr, "  %s\n", p)
	}
	fmt.Fprintf(os.Stderr, "cairn: fix: chmod -R go-rwx %s (any backup, import, prune or forget by the repository's owner also fixes them)\n", dir)
}

// warnFilledHoles tells on stderr when the delta images take far more
// space than the data they store: a copy that did not keep holes (rsync
// without -S, tar without --sparse) wrote them as zeros. The data is
// sound; fallocate --dig-holes gives the space back in place.
func warnFilledHoles(c *cli.Context, repo *blockmap.Repo) {
	data, held, err := repo.ImageSpace(c.Context)
	if err != nil || held <= 2*data+32<<20 {
		return
	}
	fmt.Fprintf(os.Stderr, "cairn: NOTE: the delta images take %s on disk for %s of data: their holes were filled (a copy by rsync without -S or tar without --sparse?); "+
		"give the space back, while no cairn process writes, with: find %s/images -name '*.img' -exec fallocate --dig-holes {} \\;\n",
		bytesize.IEC(held), bytesize.IEC(data), repo.Dir())
}
