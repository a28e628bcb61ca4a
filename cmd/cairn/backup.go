package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/nbd"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/bytesize"
)

func backupCommands() []*cli.Command {
	return []*cli.Command{backupCommand(), jobsCommand(), verifySourceCommand()}
}

// vcenterFlags are the connection and transport flags shared by backup
// and verify-source.
func vcenterFlags() []cli.Flag {
	return append(append(vcenterConnFlags(),
		&cli.StringSliceFlag{Name: "vm", Required: true, Usage: "VM name, inventory path or MoRef (repeatable)"},
		&cli.StringFlag{Name: "transport", Value: strings.Join(backupd.DefaultTransports, ","), Usage: "transports to try in order: hotadd, nbd, file"},
		&cli.StringFlag{Name: "nbd-command", Value: backupd.DefaultNBDCommand, Usage: "NBD server command `TEMPLATE` started per disk"},
		&cli.StringFlag{Name: "nbd-url", Usage: "connect to this NBD `URI` instead of starting a server (placeholders allowed)"},
		&cli.DurationFlag{Name: "nbd-stall-timeout", Value: 60 * time.Second, Usage: "fail an NBD connection that makes no progress for this long"},
		&cli.IntFlag{Name: "nbd-retries", Value: 5, Usage: "retries of a failed NBD read"},
		&cli.StringFlag{Name: "proxy-vm", Usage: "the appliance's own VM, for hotadd"},
		&cli.StringSliceFlag{Name: "datastore-dir", Usage: "NAME=DIR: a datastore mounted on this machine (file transport, {disk_local_path})"},
		&cli.StringFlag{Name: "quiesce", Value: vsphere.QuiesceAuto, Usage: "auto (fall back to crash-consistent), require or off"},
		&cli.IntFlag{Name: "parallel-disks", Value: 2, Usage: "disks of one VM read at once"},
		&cli.StringSliceFlag{Name: "exclude-disk", Usage: "`DISK` or VM/DISK not to back up: scsi0:1, scsi0-1, a glob (scsi0-*) or a label (\"Hard disk 2\"); VM may be a glob (repeatable)"},
		&cli.BoolFlag{Name: "json", Usage: "print the results as JSON"},
	), nbdTLSFlags()...)
}

// vcenterConnFlags are the flags that reach a vCenter: its URL, the
// credentials file and how its certificate is checked (backup,
// verify-source and the restore commands).
func vcenterConnFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "vcenter", Required: true, Usage: "vCenter or ESXi SDK `URL` (https://HOST/sdk)", EnvVars: []string{"CAIRN_VCENTER"}},
		&cli.StringFlag{Name: "credentials", Usage: "`FILE` with the user and password on two lines (mode 0600)"},
		&cli.StringFlag{Name: "thumbprint", Usage: "pin the vCenter certificate by its SHA-256 thumbprint"},
		&cli.BoolFlag{Name: "insecure", Usage: "do not verify the vCenter certificate (not recommended)"},
	}
}

// connectVCenter loads the credentials file and connects to the vCenter
// that vcenterConnFlags name.
func connectVCenter(c *cli.Context) (*vsphere.Conn, vsphere.Credentials, error) {
	creds, err := vsphere.LoadCredentials(c.String("credentials"))
	if err != nil {
		return nil, creds, err
	}
	conn, err := vsphere.Connect(c.Context, vsphere.ConnectOptions{
		URL: c.String("vcenter"), Credentials: creds, Thumbprint: c.String("thumbprint"), Insecure: c.Bool("insecure"), Logger: slog.Default(),
	})
	return conn, creds, err
}

// openRepoAndVCenter opens the repository and connects to the vCenter;
// on an error nothing stays open.
func openRepoAndVCenter(c *cli.Context) (*blockmap.Repo, *vsphere.Conn, vsphere.Credentials, error) {
	repo, err := openRepo(c)
	if err != nil {
		return nil, nil, vsphere.Credentials{}, err
	}
	conn, creds, err := connectVCenter(c)
	if err != nil {
		repo.Close()
		return nil, nil, creds, err
	}
	return repo, conn, creds, nil
}

// jobSetup parses the shared flags, opens the repository and connects.
func jobSetup(c *cli.Context) (*blockmap.Repo, *vsphere.Conn, backupd.JobOptions, error) {
	var opts backupd.JobOptions
	transports, err := backupd.ParseTransports(c.String("transport"))
	if err != nil {
		return nil, nil, opts, err
	}
	quiesce, err := vsphere.ParseQuiesce(c.String("quiesce"))
	if err != nil {
		return nil, nil, opts, err
	}
	dirs, err := parseDatastoreDirs(c.StringSlice("datastore-dir"))
	if err != nil {
		return nil, nil, opts, err
	}
	nbdTLS, err := nbdTLSOptions(c)
	if err != nil {
		return nil, nil, opts, err
	}
	excl, err := backupd.ParseDiskExclusions(c.StringSlice("exclude-disk"))
	if err != nil {
		return nil, nil, opts, fmt.Errorf("--exclude-disk: %w", err)
	}
	repo, conn, creds, err := openRepoAndVCenter(c)
	if err != nil {
		return nil, nil, opts, err
	}
	opts = backupd.JobOptions{
		Transports: transports, NBDCommand: c.String("nbd-command"), NBDURL: c.String("nbd-url"),
		NBD:     nbd.Options{StallTimeout: c.Duration("nbd-stall-timeout"), Retries: c.Int("nbd-retries"), TLS: nbdTLS},
		ProxyVM: c.String("proxy-vm"), DatastoreDirs: dirs, Quiesce: quiesce, ParallelDisks: c.Int("parallel-disks"),
		Credentials: creds, Thumbprint: c.String("thumbprint"), Progress: diskProgress(), ExcludeDisks: excl,
	}
	if opts.NBD.Retries == 0 {
		opts.NBD.Retries = -1
	}
	return repo, conn, opts, nil
}

func verifySourceCommand() *cli.Command {
	return &cli.Command{
		Name:  "verify-source",
		Usage: "compare each VM's latest point with the VM itself, to catch changes CBT missed",
		Description: "Snapshots the VM, reads every disk whole and compares every block with the latest\n" +
			"point. A block that differs where CBT reports no change since that point is a change\n" +
			"CBT missed (VMware documents that this can happen). With --repair a corrected point\n" +
			"(everything read from the snapshot) is stored. Exit code 1 when something was missed.",
		Flags: append(vcenterFlags(), &cli.BoolFlag{Name: "repair", Usage: "store a corrected point when CBT missed changes"}),
		Action: func(c *cli.Context) error {
			repo, conn, opts, err := jobSetup(c)
			if err != nil {
				return err
			}
			defer repo.Close()
			defer conn.Close()
			var bad []string
			var reps []*backupd.SourceReport
			for _, vm := range c.StringSlice("vm") {
				rep, err := backupd.VerifyAgainstSource(c.Context, repo, conn, vm, backupd.VerifySourceOptions{JobOptions: opts, Repair: c.Bool("repair")})
				if err != nil {
					return fmt.Errorf("verify %s against its source: %w", vm, err)
				}
				reps = append(reps, rep)
				if !rep.OK() {
					bad = append(bad, vm)
				}
				if c.Bool("json") {
					continue
				}
				for _, d := range rep.Disks {
					state := "ok"
					if len(d.Missed) > 0 {
						state = fmt.Sprintf("CBT MISSED %s in %d areas", bytesize.IEC(d.MissedBytes()), len(d.Missed))
					}
					fmt.Printf("%s\t%s\t%s\tcompared %s\t%s\n", rep.VM, rep.Point, d.Name, bytesize.IEC(d.Compared), state)
					for _, e := range d.Missed {
						fmt.Printf("\tmissed %d+%d\n", e.Offset, e.Length)
					}
					if d.Note != "" {
						fmt.Printf("\tnote: %s\n", d.Note)
					}
				}
				if rep.Repaired != "" {
					fmt.Printf("%s\trepaired: new point %s\n", rep.VM, rep.Repaired)
				}
			}
			if c.Bool("json") {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(reps); err != nil {
					return err
				}
			}
			if len(bad) > 0 {
				return afterJSON(c.Bool("json"), cli.Exit("CBT missed changes on: "+strings.Join(bad, ", "), 1))
			}
			return nil
		},
	}
}

func backupCommand() *cli.Command {
	return &cli.Command{
		Name:  "backup",
		Usage: "back up vSphere VMs (agentless: snapshot + changed block tracking) as new recovery points",
		Description: "Each VM gets a snapshot named cairn-<job id> (quiesced unless --quiesce=off), the\n" +
			"areas changed since its last point are read through the first transport that works,\n" +
			"and one recovery point is committed. The first backup of a disk, or one after a CBT\n" +
			"reset or a disk resize, reads every allocated area. Credentials come from --credentials\n" +
			"FILE (user and password on two lines, mode 0600) or CAIRN_VC_USER/CAIRN_VC_PASSWORD.\n" +
			"NBD command placeholders: {socket} {server} {user} {password_file} {thumbprint}\n" +
			"{vm_moref} {snapshot_moref} {disk_file} {disk_local_path} {vm} {disk}.\n" +
			"Prints one line per VM: VM, point id, consistency, bytes read, bytes stored.",
		Flags: append(append(vcenterFlags(),
			&cli.IntFlag{Name: "parallel-vms", Value: 1, Usage: "VMs backed up at once"},
			&cli.IntFlag{Name: "per-host", Value: 2, Usage: "VMs backed up at once on one ESXi host"},
		), append(backupHookFlags(), anomalyFlags()...)...),
		Action: backupAction,
	}
}

func backupAction(c *cli.Context) error {
	hooks, err := backupHooks(c)
	if err != nil {
		return err
	}
	repo, conn, opts, err := jobSetup(c)
	if err != nil {
		return err
	}
	opts.Hooks = hooks
	if opts.Anomaly, err = anomalyThresholds(c, "backup"); err != nil {
		repo.Close()
		conn.Close()
		return err
	}
	defer repo.Close()
	defer conn.Close()
	outs := backupd.BackupVMs(c.Context, repo, conn, c.StringSlice("vm"), opts,
		backupd.ParallelOptions{VMs: c.Int("parallel-vms"), PerHost: c.Int("per-host")})
	return printBackupResults(c.Bool("json"), outs)
}

// diskProgress shows one progress line per disk on a terminal (stderr);
// parallel disks get a line each. Nothing is drawn when stderr is not a
// terminal.
func diskProgress() func(vm, disk string, total int64) (func(int64), func()) {
	if !term.IsTerminal(int(os.Stderr.Fd())) {
		return nil
	}
	m := &multiBar{out: os.Stderr}
	return m.add
}

// multiBar redraws a block of progress lines, one per disk.
type multiBar struct {
	mu     sync.Mutex
	out    io.Writer
	bars   []*barLine
	drawn  int // lines drawn last time
	ticker *time.Ticker
	stop   chan struct{}
}

type barLine struct {
	label      string
	total      int64
	done       atomic.Int64
	start, end time.Time
	isFinished bool
}

func (m *multiBar) add(vm, disk string, total int64) (func(int64), func()) {
	b := &barLine{label: vm + "/" + disk, total: total, start: time.Now()}
	m.mu.Lock()
	m.bars = append(m.bars, b)
	if m.ticker == nil {
		m.ticker, m.stop = time.NewTicker(200*time.Millisecond), make(chan struct{})
		go m.loop(m.ticker, m.stop)
	}
	m.mu.Unlock()
	return func(n int64) { b.done.Add(n) }, func() {
		m.mu.Lock()
		b.isFinished, b.end = true, time.Now()
		m.drawLocked()
		active := false
		for _, o := range m.bars {
			active = active || !o.isFinished
		}
		if !active && m.ticker != nil {
			m.ticker.Stop()
			close(m.stop)
			m.ticker, m.bars, m.drawn = nil, nil, 0
		}
		m.mu.Unlock()
	}
}

func (m *multiBar) loop(t *time.Ticker, stop chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			m.mu.Lock()
			m.drawLocked()
			m.mu.Unlock()
		}
	}
}

func (m *multiBar) drawLocked() {
	if m.drawn > 0 {
		fmt.Fprintf(m.out, "\x1b[%dA", m.drawn)
	}
	for _, b := range m.bars {
		done := b.done.Load()
		pct := 100.0
		if b.total > 0 {
			pct = float64(done) * 100 / float64(b.total)
		}
		end := time.Now()
		if b.isFinished {
			end = b.end
		}
		rate := float64(done) / max(end.Sub(b.start).Seconds(), 0.001)
		filled := min(int(pct/100*30), 30)
		fmt.Fprintf(m.out, "\r\x1b[K%-20s [%s%s] %5.1f%% %s/%s %s/s\n", b.label, strings.Repeat("#", filled), strings.Repeat(".", 30-filled),
			pct, bytesize.IEC(done), bytesize.IEC(b.total), bytesize.IEC(int64(rate)))
	}
	m.drawn = len(m.bars)
}

func printBackupResults(asJSON bool, outs []backupd.VMOutcome) error {
	var failed []string
	if asJSON {
		type item struct {
			VM     string          `json:"vm"`
			Result *backupd.Result `json:"result,omitempty"`
			Error  string          `json:"error,omitempty"`
			// Verdict is the new point's suspicious-change verdict.
			Verdict json.RawMessage `json:"verdict,omitempty"`
		}
		var items []item
		for _, o := range outs {
			it := item{VM: o.Spec, Result: o.Result}
			if o.Result != nil {
				it.Verdict = o.Result.Point.Verdict
			}
			if errors.Is(o.Err, backupd.ErrSkippedByHook) {
				it.Error = o.Err.Error() // skipped on purpose: no failure
			} else if o.Err != nil {
				it.Error = o.Err.Error()
				failed = append(failed, o.Spec)
			}
			items = append(items, it)
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(items); err != nil {
			return err
		}
	} else {
		for _, o := range outs {
			if errors.Is(o.Err, backupd.ErrSkippedByHook) {
				fmt.Fprintf(os.Stderr, "cairn: %s not backed up: %v\n", o.Spec, o.Err)
				continue
			}
			if o.Err != nil {
				fmt.Fprintf(os.Stderr, "cairn: backup of %s failed: %v\n", o.Spec, o.Err)
				failed = append(failed, o.Spec)
				continue
			}
			r := o.Result
			fmt.Printf("%s\t%s\t%s\tread %s\tstored %s\n", r.VM, r.PointID, r.Consistency, bytesize.IEC(r.BytesRead()), bytesize.IEC(r.BytesWritten()))
			for _, s := range r.Skipped {
				if s.Kind == vsphere.SkipExcluded {
					fmt.Printf("\tdisk %s excluded\n", s.Name)
				}
			}
			for _, w := range r.Warnings {
				fmt.Fprintf(os.Stderr, "cairn: warning: %s: %s\n", r.VM, w)
			}
			warnSuspicious(r.Point)
		}
	}
	if len(failed) > 0 {
		return afterJSON(asJSON, cli.Exit(fmt.Sprintf("backup failed for %d of %d VMs: %s", len(failed), len(outs), strings.Join(failed, ", ")), 1))
	}
	return nil
}

func parseDatastoreDirs(items []string) (vsphere.DatastoreDirs, error) {
	dirs := vsphere.DatastoreDirs{}
	for _, it := range items {
		name, dir, ok := strings.Cut(it, "=")
		if !ok || name == "" || dir == "" {
			return nil, fmt.Errorf("--datastore-dir %q: want NAME=DIR", it)
		}
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("--datastore-dir %q: %s is not a directory", it, dir)
		}
		dirs[name] = dir
	}
	return dirs, nil
}

func jobsCommand() *cli.Command {
	return &cli.Command{
		Name:  "jobs",
		Usage: "list backup, import, restore, replicate and pull jobs (start, end, VM, result, bytes read and stored or written, uploaded or downloaded, error)",
		Description: "When cairn serve runs on the repository (or --server is given) this lists the\n" +
			"server's runs, queued and running ones included; --history (or no server) lists\n" +
			"the repository's job log, which every cairn process appends to.",
		Flags: []cli.Flag{
			jsonFlag(),
			&cli.IntFlag{Name: "last", Usage: "show only the last N jobs"},
			&cli.BoolFlag{Name: "history", Usage: "list the repository's job log even when a server runs"},
			serverFlag, tokenFileFlag,
		},
		Action: func(c *cli.Context) error {
			if !c.Bool("history") {
				srv, err := findServer(c)
				if err != nil {
					return err
				}
				if srv != nil {
					err := serverJobs(c, srv)
					if err == nil || c.String("server") != "" {
						return err
					}
					// serve.json names a server that does not answer.
					fmt.Fprintf(os.Stderr, "cairn: %v; listing the repository's job log\n", err)
				}
			}
			if c.String("repo") == "" {
				return errors.New("jobs: give --repo DIR or set CAIRN_REPO (or --server URL of cairn serve)")
			}
			repo, err := openRepo(c)
			if err != nil {
				return err
			}
			dir := repo.Dir()
			repo.Close()
			jobs, err := backupd.NewJobLog(dir).List()
			if err != nil {
				return err
			}
			if n := c.Int("last"); n > 0 && len(jobs) > n {
				jobs = jobs[len(jobs)-n:]
			}
			if c.Bool("json") {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				if jobs == nil {
					jobs = []backupd.JobRecord{}
				}
				return enc.Encode(jobs)
			}
			return printJobTable(os.Stdout, jobs)
		},
	}
}

// printJobTable prints job log records as cairn jobs lists them.
func printJobTable(w io.Writer, jobs []backupd.JobRecord) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "JOB\tVM\tSTART\tEND\tRESULT\tPOINT\tREAD\tSTORED\tOFFSITE\tERROR")
	for _, j := range jobs {
		end := "-"
		if !j.End.IsZero() {
			end = j.End.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Describe(), j.Start.Format(time.RFC3339), end, j.State,
			jobPoints(j), bytesize.IEC(j.BytesRead), bytesize.IEC(j.BytesWritten), jobOffsite(j), oneLine(jobErrorText(j)))
	}
	return tw.Flush()
}

// jobPoints is the POINT column of cairn jobs: the point a backup, import
// or restore made or read; how many points a replicate or pull copied.
func jobPoints(j backupd.JobRecord) string {
	if (j.Kind == backupd.JobReplicate || j.Kind == backupd.JobPull) && j.Point == "" {
		if j.End.IsZero() || (j.State == backupd.JobFailed || j.State == backupd.JobCancelled) && j.Points == 0 && j.PointsPresent == 0 {
			return "-"
		}
		return fmt.Sprintf("%s copied, %d there", count(j.Points, "point"), j.PointsPresent)
	}
	return dash(j.Point)
}

// jobOffsite is the OFFSITE column of cairn jobs: what a replicate uploaded
// or a pull downloaded.
func jobOffsite(j backupd.JobRecord) string {
	if j.BytesUploaded == 0 && j.BytesDownloaded == 0 && j.State != backupd.JobOK {
		return "-"
	}
	switch j.Kind {
	case backupd.JobReplicate:
		return bytesize.IEC(j.BytesUploaded) + " up"
	case backupd.JobPull:
		return bytesize.IEC(j.BytesDownloaded) + " down"
	}
	return "-"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
