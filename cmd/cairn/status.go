package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/serve"
	"github.com/cairnbackup/cairn/internal/bytesize"
)

// serverFlag names the cairn serve to ask; without it the repository's
// serve.json says where its server listens.
var serverFlag = &cli.StringFlag{
	Name: "server", EnvVars: []string{"CAIRN_SERVER"},
	Usage: "`URL` of cairn serve (default: the server recorded in the repository's serve.json)",
}

// tokenFileFlag names the API token's file; without it the repository's
// api-token is read.
var tokenFileFlag = &cli.StringFlag{
	Name: "token-file", EnvVars: []string{"CAIRN_TOKEN_FILE"},
	Usage: "`FILE` holding the API token (default: the repository's " + serve.TokenFileName + ")",
}

// serverClient talks to a running cairn serve.
type serverClient struct {
	base  string
	token string
	http  *http.Client
}

// findServer returns a client for the server named by --server, or the
// one recorded in the repository; nil (and no error) when none runs. Its
// token comes from --token-file or the repository; a server recorded
// with a TLS certificate is reached over HTTPS trusting exactly that
// certificate.
func findServer(c *cli.Context) (*serverClient, error) {
	base := c.String("server")
	repo := c.String("repo")
	client := &http.Client{Timeout: 30 * time.Second}
	if base == "" {
		if repo == "" {
			return nil, nil
		}
		f, err := serve.ReadServeFile(repo)
		if errors.Is(err, serve.ErrNotServing) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		base = "http://" + dialable(f.Listen)
		if f.TLSCert != "" {
			pin, err := pinnedTLS(f.TLSCert)
			if err != nil {
				return nil, err
			}
			base = "https://" + dialable(f.Listen)
			client.Transport = &http.Transport{TLSClientConfig: pin}
		}
	}
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	if err := checkPlainHTTP(base); err != nil {
		return nil, err
	}
	var token string
	var err error
	switch {
	case c.String("token-file") != "":
		token, err = readTokenFile(c.String("token-file"))
	case repo != "":
		token, err = serve.ReadToken(repo)
		if errors.Is(err, serve.ErrNoToken) {
			// A serve.json without a token (left by an older cairn):
			// the server will say 401, and status falls back to the
			// repository.
			token, err = "", nil
		}
	default:
		err = errors.New("no API token: give --token-file FILE (the api-token of the server's repository) or --repo DIR")
	}
	if err != nil {
		return nil, err
	}
	return &serverClient{base: strings.TrimSuffix(base, "/"), token: token, http: client}, nil
}

func readTokenFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("API token: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("API token: %s is empty", path)
	}
	return tok, nil
}

// checkPlainHTTP refuses to send the API token in clear text beyond this
// machine: an http:// URL must name a loopback address.
func checkPlainHTTP(base string) error {
	u, err := url.Parse(base)
	if err != nil {
		return fmt.Errorf("--server %s: %w", base, err)
	}
	if u.Scheme != "http" {
		return nil
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || host == "localhost" {
		return nil
	}
	return fmt.Errorf("--server %s: the API token would cross the network in clear text; use https:// (cairn serve needs api: tls_cert beyond loopback)", base)
}

// dialable turns a listen address on every interface into one a client
// can dial (127.0.0.1).
func dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1" // also reaches a dual-stack [::] listener
	}
	return net.JoinHostPort(host, port)
}

// pinnedTLS trusts exactly the certificate in certFile (the server's own,
// recorded in serve.json), whatever names it carries.
func pinnedTLS(certFile string) (*tls.Config, error) {
	data, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("the API's certificate: %w (give --server URL to use the system's trust store)", err)
	}
	var pinned [][]byte
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			pinned = append(pinned, b.Bytes)
		}
	}
	if len(pinned) == 0 {
		return nil, fmt.Errorf("the API's certificate %s holds no PEM certificate", certFile)
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by the pin below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) > 0 && bytes.Equal(cs.PeerCertificates[0].Raw, pinned[0]) {
				return nil
			}
			return fmt.Errorf("the server's certificate is not %s", certFile)
		},
	}, nil
}

// authorize adds the API token to req.
func (s *serverClient) authorize(req *http.Request) {
	req.Header.Set("Authorization", "Bearer "+s.token)
}

// get fetches path into v.
func (s *serverClient) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+path, nil)
	if err != nil {
		return err
	}
	s.authorize(req)
	resp, err := s.http.Do(req)
	if err != nil {
		return fmt.Errorf("cairn serve at %s: %w (is it running? give --server URL)", s.base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("cairn serve at %s: %s: %w", s.base, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("cairn serve at %s: %s: %s: %s", s.base, path, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("cairn serve at %s: %s: %w", s.base, path, err)
	}
	return nil
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show what cairn serve is doing: jobs and their next runs, running backups, verify, points per VM",
		Description: "Asks the cairn serve running on --repo (found through the repository's serve.json)\n" +
			"or at --server URL. Without a server it shows the repository: VMs, points and\n" +
			"each VM's last job.",
		Flags: []cli.Flag{serverFlag, tokenFileFlag, jsonFlag()},
		Action: func(c *cli.Context) error {
			srv, err := findServer(c)
			if err != nil {
				return err
			}
			if srv == nil {
				if c.String("repo") == "" {
					return errors.New("status: give --repo DIR (or set CAIRN_REPO), or --server URL of cairn serve")
				}
				return repoStatus(c)
			}
			var st serve.Status
			if err := srv.get(c.Context, "/api/v1/status", &st); err != nil {
				if c.String("server") != "" || c.String("repo") == "" {
					return err
				}
				// serve.json names a server that does not answer (killed,
				// and its pid reused): show the repository instead.
				fmt.Fprintf(os.Stderr, "cairn: %v; showing the repository\n", err)
				return repoStatus(c)
			}
			if c.Bool("json") {
				return printJSON(st)
			}
			printStatus(os.Stdout, srv.base, st)
			var rr struct {
				Replications []serve.ReplicationRecord `json:"replications"`
			}
			if err := srv.get(c.Context, "/api/v1/replications", &rr); err == nil {
				printReplications(os.Stdout, rr.Replications)
			}
			return nil
		},
	}
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func printStatus(w io.Writer, base string, st serve.Status) {
	fmt.Fprintf(w, "cairn serve %s, pid %d, up since %s\n", st.Version, st.PID, when(st.Started))
	fmt.Fprintf(w, "  api %s  console %s/ui/  config %s\n  repository %s  mount %s\n", base, base, dash(st.Config), st.Repository, dash(st.Mount))
	if st.Timezone != "" {
		zone, _ := time.Now().Zone()
		fmt.Fprintf(w, "  times shown in %s; cron schedules run in %s\n", zone, st.Timezone)
	}
	for _, vc := range st.VCenters {
		if vc.OK {
			fmt.Fprintf(w, "  vcenter %s: login ok at %s\n", vc.Name, when(vc.Checked))
		} else {
			fmt.Fprintf(w, "  vcenter %s: login FAILED at %s (its jobs fail until this is fixed): %s\n", vc.Name, when(vc.Checked), vc.Error)
		}
	}
	if st.ReloadError != "" {
		fmt.Fprintf(w, "  CONFIG RELOAD REJECTED at %s (the previous configuration stays in force; fix the file and reload again): %s\n", when(st.ReloadErrorAt), st.ReloadError)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tSCHEDULE\tNEXT RUN\tRUNNING\tLAST END\tLAST OK\tLAST FAILED")
	for _, j := range st.Jobs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%d\n", j.Name, dash(j.Schedule), when(j.NextRun), j.Running, when(j.LastEnd), j.LastOK, j.LastFail)
	}
	tw.Flush()
	if len(st.Running) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "RUN\tJOB\tVM\tHOST\tSTATE\tATTEMPT\tSINCE")
		for _, r := range st.Running {
			since := r.Start
			if since.IsZero() {
				since = r.Queued
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", r.ID, r.Job, r.VM, dash(r.Host), r.State, r.Attempts, when(since))
		}
		tw.Flush()
	}
	v := st.Verify
	fmt.Fprintln(w)
	switch {
	case v.Running:
		fmt.Fprintf(w, "repository verify: running since %s\n", when(v.Start))
	case v.End.IsZero():
		fmt.Fprintf(w, "repository verify: not run since the server started (schedule %s, next %s)\n", dash(v.Schedule), when(v.NextRun))
	case v.Error != "":
		fmt.Fprintf(w, "repository verify: FAILED at %s: %s\n", when(v.End), v.Error)
	default:
		state := "clean"
		if len(v.Bad) > 0 {
			state = fmt.Sprintf("%d BAD BLOCKS (cairn verify names them)", len(v.Bad))
		}
		fmt.Fprintf(w, "repository verify: %s, %d blocks (%s) at %s; next %s\n", state, v.Blocks, bytesize.IEC(v.Bytes), when(v.End), when(v.NextRun))
	}
	printNotifyStatus(w, st.Notify)
	fmt.Fprintln(w)
	printVMTable(w, st.VMs)
}

func printVMTable(w io.Writer, vms []serve.VMStatus) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	runs := false
	for _, v := range vms {
		runs = runs || v.LastRun != nil
	}
	if runs {
		fmt.Fprintln(tw, "VM\tPOINTS\tLATEST\tCONSISTENCY\tLAST BACKUP")
	} else {
		fmt.Fprintln(tw, "VM\tPOINTS\tLATEST\tCONSISTENCY")
	}
	var failed []serve.VMStatus
	for _, v := range vms {
		latest, cons := "-", "-"
		if v.Latest != nil {
			latest, cons = v.Latest.ID, v.Latest.Consistency
		}
		if !runs {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", v.Name, v.Points, latest, cons)
			continue
		}
		last := "-"
		if r := v.LastRun; r != nil {
			last = r.State + " " + when(r.End)
			if r.State == serve.StateFailed {
				last = "FAILED " + when(r.End)
				failed = append(failed, v)
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", v.Name, v.Points, latest, cons, last)
	}
	tw.Flush()
	for _, v := range failed {
		fmt.Fprintf(w, "%s: last backup (job %s) failed: %s\n", v.Name, v.LastRun.Job, v.LastRun.Error)
	}
	printSuspiciousVMs(w, vms)
	for _, v := range vms {
		if v.Unselected {
			fmt.Fprintf(w, "%s: no job backs it up any more (removed from the vCenter, or from every job's selection); its %d points are kept (cairn forget removes them)\n", v.Name, v.Points)
		}
	}
}

// repoStatus is `cairn status` without a server: the repository's VMs and
// each VM's last job.
func repoStatus(c *cli.Context) error {
	repo, cat, err := openCatalog(c)
	if err != nil {
		return err
	}
	defer repo.Close()
	jobs, err := backupd.NewJobLog(repo.Dir()).List()
	if err != nil {
		return err
	}
	last := map[string]backupd.JobRecord{}
	for _, j := range jobs {
		last[j.VM] = j
	}
	type vmOut struct {
		serve.VMStatus
		LastJob *backupd.JobRecord `json:"last_job,omitempty"`
	}
	out := []vmOut{}
	for _, v := range serve.VMStatuses(cat) {
		o := vmOut{VMStatus: v}
		if j, ok := last[v.Name]; ok {
			o.LastJob = &j
		}
		out = append(out, o)
	}
	if c.Bool("json") {
		return printJSON(map[string]any{"server": nil, "repository": repo.Dir(), "vms": out})
	}
	fmt.Printf("cairn serve is not running on %s (no live serve.json); the repository:\n\n", repo.Dir())
	tw := newTable(os.Stdout)
	fmt.Fprintln(tw, "VM\tPOINTS\tLATEST\tLAST JOB\tRESULT\tERROR")
	for _, o := range out {
		latest, lj, res, msg := "-", "-", "-", ""
		if o.Latest != nil {
			latest = o.Latest.ID
		}
		if o.LastJob != nil {
			lj, res, msg = when(o.LastJob.Start), o.LastJob.State, oneLine(o.LastJob.Error)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", o.Name, o.Points, latest, lj, res, msg)
	}
	return tw.Flush()
}

// serverJobs prints the runs of a cairn serve (`cairn jobs` when a server
// runs on the repository).
func serverJobs(c *cli.Context, srv *serverClient) error {
	var jr serve.JobsResponse
	if err := srv.get(c.Context, "/api/v1/jobs", &jr); err != nil {
		return err
	}
	if n := c.Int("last"); n > 0 && len(jr.Runs) > n {
		jr.Runs = jr.Runs[len(jr.Runs)-n:]
	}
	if c.Bool("json") {
		return printJSON(jr)
	}
	return printServerJobs(os.Stdout, srv.base, jr, c.Int("last"))
}

// printServerJobs prints a server's runs and, after them, the replicate
// runs and pulls of the repository's job log (serve's own replications
// are not runs of its backup queue; a failed offsite copy must show).
func printServerJobs(w io.Writer, base string, jr serve.JobsResponse, last int) error {
	fmt.Fprintf(w, "runs of cairn serve at %s (the repository's full history: cairn jobs --history)\n", base)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tJOB\tVM\tHOST\tTRIGGER\tSTATE\tATTEMPTS\tSTART\tEND\tPOINT\tREAD\tSTORED\tERROR")
	for _, r := range jr.Runs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Job, r.VM, dash(r.Host), r.Trigger, r.State,
			r.Attempts, when(r.Start), when(r.End), dash(r.Point), bytesize.IEC(r.BytesRead), bytesize.IEC(r.BytesWritten), oneLine(r.Error))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var offsite []backupd.JobRecord
	for _, j := range jr.History {
		if j.Kind == backupd.JobReplicate || j.Kind == backupd.JobPull || j.Kind == backupd.JobVerifyRemote {
			offsite = append(offsite, j)
		}
	}
	if last > 0 && len(offsite) > last {
		offsite = offsite[len(offsite)-last:]
	}
	if len(offsite) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nreplications and pulls (the repository's job log):")
	return printJobTable(w, offsite)
}

// post sends a JSON body to path and decodes the answer into v; want is
// the expected status code.
func (s *serverClient) post(ctx context.Context, path string, body any, want int, v any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	var resp *http.Response
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+path, strings.NewReader(string(data)))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		s.authorize(req)
		resp, err = s.http.Do(req)
		if err != nil {
			return fmt.Errorf("cairn serve at %s: %w (is it running? give --server URL)", s.base, err)
		}
		// The server limits the rate of backup requests: wait as it says.
		wait, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		if resp.StatusCode != http.StatusTooManyRequests || wait < 1 || wait > 5 || attempt >= 30 {
			break
		}
		resp.Body.Close()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(wait) * time.Second):
		}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		var e struct{ Error string }
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return fmt.Errorf("cairn serve at %s: %s", s.base, e.Error)
		}
		return fmt.Errorf("cairn serve at %s: %s: %s", s.base, resp.Status, strings.TrimSpace(string(raw)))
	}
	return json.Unmarshal(raw, v)
}

func triggerCommand() *cli.Command {
	return &cli.Command{
		Name:  "trigger",
		Usage: "ask cairn serve to back a VM up now (its job's transports, caps, retries and retention apply)",
		Flags: []cli.Flag{
			serverFlag, tokenFileFlag,
			&cli.StringSliceFlag{Name: "vm", Required: true, Usage: "VM `NAME` (repeatable)"},
			&cli.StringFlag{Name: "job", Usage: "the `JOB` to run it with (default: the first job that selects the VM)"},
			&cli.BoolFlag{Name: "wait", Usage: "wait until the backups end; exit 1 if one failed, 3 if none failed but one was cancelled (the server stopped)"},
		},
		Action: func(c *cli.Context) error {
			srv, err := findServer(c)
			if err != nil {
				return err
			}
			if srv == nil {
				return errors.New("trigger: no cairn serve runs on this repository; give --repo DIR of a served repository or --server URL (or run cairn backup)")
			}
			ids := map[string]string{}
			for _, vm := range c.StringSlice("vm") {
				var acc struct{ ID, Job, VM string }
				if err := srv.post(c.Context, "/api/v1/jobs", map[string]string{"vm": vm, "job": c.String("job")}, http.StatusAccepted, &acc); err != nil {
					return fmt.Errorf("trigger %s: %w", vm, err)
				}
				fmt.Printf("%s: run %s (job %s)\n", vm, acc.ID, acc.Job)
				ids[acc.ID] = vm
			}
			if !c.Bool("wait") {
				return nil
			}
			return waitRuns(c.Context, srv, ids) // trigger_wait.go
		},
	}
}
