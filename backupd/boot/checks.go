package boot

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Kinds of application checks.
const (
	CheckTCP    = "tcp"
	CheckHTTP   = "http"
	CheckScript = "script"
)

// DefaultCheckTimeout is how long each check may take to pass once the
// guest booted.
const DefaultCheckTimeout = 3 * time.Minute

// checkRetry is the pause between two tries of a check.
const checkRetry = 2 * time.Second

// tcpAnswerWait is how long a tcp check's try waits for the guest to
// accept or refuse the connection qemu accepted for it.
const tcpAnswerWait = 5 * time.Second

// ErrBadCheck means a check spec is not understood.
var ErrBadCheck = errors.New("bad check")

// ErrNoNIC means network checks were asked of a machine without a NIC.
var ErrNoNIC = errors.New("the machine has no network adapter")

// CheckSyntax says how checks are written (for error messages and help).
const CheckSyntax = "tcp:PORT, http://:PORT/PATH[=STATUS][~REGEX] (or https://), or script:/PATH/TO/PROGRAM ARGS..."

// Check is one application check run against a booted guest: a TCP port
// that accepts, an HTTP page with the wanted status (and body), or a
// program on the host whose exit status decides.
type Check struct {
	// Spec is the check as written ("tcp:5432").
	Spec string
	// Kind is CheckTCP, CheckHTTP or CheckScript.
	Kind string
	// Port is the guest's TCP port (tcp and http checks).
	Port int
	// Scheme ("http" or "https"), Path (with query), Status (0: any
	// 2xx) and Body (nil: any) shape an http check.
	Scheme string
	Path   string
	Status int
	Body   *regexp.Regexp
	// Argv is a script check's program and arguments (no shell).
	Argv []string
}

// CheckResult is what one check found.
type CheckResult struct {
	Spec    string  `json:"spec"`
	Passed  bool    `json:"passed"`
	Seconds float64 `json:"seconds"`
	Detail  string  `json:"detail"`
	// Output is the end of a script check's last output.
	Output string `json:"output,omitempty"`
}

// ParseChecks parses check specs (see CheckSyntax).
func ParseChecks(specs []string) ([]Check, error) {
	var out []Check
	for _, s := range specs {
		c, err := ParseCheck(s)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// ParseCheck parses one check spec: "tcp:PORT"; "http://:PORT/PATH"
// (any 2xx), with "=STATUS" for an exact status and "~REGEX" for a body
// that must match (a '~' in the path is written %7E); "script:PROGRAM
// ARGS..." split like a shell would, without expansions.
func ParseCheck(spec string) (Check, error) {
	c := Check{Spec: spec}
	bad := func(format string, a ...any) (Check, error) {
		return Check{}, fmt.Errorf("%w %q: %s (checks are %s)", ErrBadCheck, spec, fmt.Sprintf(format, a...), CheckSyntax)
	}
	switch {
	case strings.HasPrefix(spec, "tcp:"):
		c.Kind = CheckTCP
		p, err := parsePort(spec[4:])
		if err != nil {
			return bad("%v", err)
		}
		c.Port = p
	case strings.HasPrefix(spec, "http://"), strings.HasPrefix(spec, "https://"):
		c.Kind = CheckHTTP
		c.Scheme, _, _ = strings.Cut(spec, "://")
		rest := spec[len(c.Scheme)+3:]
		if !strings.HasPrefix(rest, ":") {
			return bad("leave the host out: a check reaches only the booted guest (%s://:PORT/PATH)", c.Scheme)
		}
		rest = rest[1:]
		i := strings.IndexAny(rest, "/=~")
		if i < 0 {
			i = len(rest)
		}
		p, err := parsePort(rest[:i])
		if err != nil {
			return bad("%v", err)
		}
		c.Port, rest = p, rest[i:]
		if path, re, ok := strings.Cut(rest, "~"); ok {
			if re == "" {
				return bad("empty ~REGEX")
			}
			if c.Body, err = regexp.Compile(re); err != nil {
				return bad("~REGEX: %v", err)
			}
			rest = path
		}
		if m := regexp.MustCompile(`=(\d{3})$`).FindStringSubmatch(rest); m != nil {
			c.Status, _ = strconv.Atoi(m[1])
			if c.Status < 100 || c.Status > 599 {
				return bad("status %d: want 100 to 599", c.Status)
			}
			rest = rest[:len(rest)-4]
		} else if strings.Contains(rest, "=") && !strings.Contains(rest, "?") {
			return bad("=STATUS: want three digits like =200")
		}
		if rest == "" {
			rest = "/"
		}
		if !strings.HasPrefix(rest, "/") || strings.ContainsAny(rest, " \t\n") {
			return bad("path %q: want /PATH without spaces", rest)
		}
		c.Path = rest
	case strings.HasPrefix(spec, "script:"):
		c.Kind = CheckScript
		argv, err := SplitArgs(spec[7:])
		if err != nil {
			return bad("%v", err)
		}
		if len(argv) == 0 {
			return bad("no program")
		}
		if !strings.HasPrefix(argv[0], "/") {
			return bad("program %q: give its absolute path (scripts run without a shell or PATH lookup)", argv[0])
		}
		if fi, err := os.Stat(argv[0]); err != nil {
			return bad("program %s: %v", argv[0], err)
		} else if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return bad("program %s is not executable (chmod +x it)", argv[0])
		}
		c.Argv = argv
	default:
		return bad("unknown kind")
	}
	return c, nil
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %q: want 1 to 65535", s)
	}
	return p, nil
}

// SplitArgs splits a command line into words as a POSIX shell does for
// quoting ('...', "...", backslash) and nothing else: no variables, globs,
// pipes or redirections.
func SplitArgs(s string) ([]string, error) {
	var out []string
	var w strings.Builder
	in := false // inside a word
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == ' ' || ch == '\t' || ch == '\n':
			if in {
				out = append(out, w.String())
				w.Reset()
				in = false
			}
		case ch == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated '")
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			in = true
		case ch == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				w.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New(`unterminated "`)
			}
			in = true
		case ch == '\\':
			if i+1 < len(s) {
				i++
				w.WriteByte(s[i])
			}
			in = true
		default:
			w.WriteByte(ch)
			in = true
		}
	}
	if in {
		out = append(out, w.String())
	}
	return out, nil
}

// CheckPorts lists the guest ports the tcp and http checks reach, sorted
// and once each: the ports to forward.
func CheckPorts(checks []Check) []int {
	var ports []int
	for _, c := range checks {
		if c.Port != 0 && !slices.Contains(ports, c.Port) {
			ports = append(ports, c.Port)
		}
	}
	slices.Sort(ports)
	return ports
}

// planForwards checks Options.Forwards, refusing a machine without a
// NIC; qemu picks the host ports (hostfwd from port 0), read back by
// readForwards once it runs, so no other process can take one between
// a choice and qemu's bind.
func (m *Machine) planForwards() error {
	if len(m.opts.Forwards) == 0 {
		return nil
	}
	ports := slices.Clone(m.opts.Forwards)
	slices.Sort(ports)
	ports = slices.Compact(ports)
	if m.opts.Network == NetworkNone || (m.opts.Config != nil && len(m.opts.Config.NICs) == 0) {
		return fmt.Errorf("%w: the checks of guest ports %v reach the guest through its first NIC; the point's VM has none (or the network is none): check it with a script, or drop the tcp/http checks", ErrNoNIC, ports)
	}
	m.Forwards = map[int]int{}
	for _, gp := range ports {
		if gp < 1 || gp > 65535 {
			return fmt.Errorf("forward of guest port %d: want 1 to 65535", gp)
		}
		m.Forwards[gp] = 0
	}
	return nil
}

// hostfwd is the netdev suffix forwarding Machine.Forwards.
func (m *Machine) hostfwd() string {
	var b strings.Builder
	ports := make([]int, 0, len(m.Forwards))
	for gp := range m.Forwards {
		ports = append(ports, gp)
	}
	slices.Sort(ports)
	for _, gp := range ports {
		fmt.Fprintf(&b, ",hostfwd=tcp:127.0.0.1:0-:%d", gp)
	}
	return b.String()
}

// readForwards fills Machine.Forwards with the host ports qemu bound.
func (m *Machine) readForwards(ctx context.Context) error {
	if len(m.Forwards) == 0 {
		return nil
	}
	info, err := m.usernet(ctx)
	if err != nil {
		return fmt.Errorf("the forwarded ports: %w", err)
	}
	got := usernetForwards(info)
	for gp := range m.Forwards {
		if got[gp] == 0 {
			return fmt.Errorf("qemu forwards no host port to guest port %d:\n%s", gp, info)
		}
		m.Forwards[gp] = got[gp]
	}
	return nil
}

// usernetForwards reads the forwards of net0 (guest port -> host port)
// from the text of "info usernet".
func usernetForwards(info string) map[int]int {
	out := map[int]int{}
	net0 := false
	for _, l := range strings.Split(info, "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && f[0] == "Hub" {
			net0 = strings.Contains(l, "(net0)")
			continue
		}
		if !net0 || len(f) < 6 || f[0] != "TCP[HOST_FORWARD]" {
			continue
		}
		hp, err1 := strconv.Atoi(f[3])
		gp, err2 := strconv.Atoi(f[5])
		if err1 == nil && err2 == nil {
			out[gp] = hp
		}
	}
	return out
}

// usernet is the text of qemu's "info usernet".
func (m *Machine) usernet(ctx context.Context) (string, error) {
	raw, err := m.qmp.Do(ctx, "human-monitor-command", map[string]string{"command-line": "info usernet"})
	if err != nil {
		return "", err
	}
	var out string
	if err := json.Unmarshal(raw, &out); err != nil {
		return "", err
	}
	return out, nil
}

// usernetEstablished asks qemu's user network whether a forwarded
// connection to the guest's port is established (the guest accepted
// it). qemu accepts a forwarded connection on the host before the guest
// answers, so a connect alone proves nothing.
func (m *Machine) usernetEstablished(ctx context.Context, guestPort int) (bool, error) {
	out, err := m.usernet(ctx)
	if err != nil {
		return false, err
	}
	return usernetHas(out, guestPort), nil
}

// usernetHas finds an established TCP connection to the guest's port in
// the text of "info usernet".
func usernetHas(info string, guestPort int) bool {
	for _, l := range strings.Split(info, "\n") {
		f := strings.Fields(l)
		if len(f) >= 6 && f[0] == "TCP[ESTABLISHED]" && f[5] == strconv.Itoa(guestPort) {
			return true
		}
	}
	return false
}

// runChecks runs every check against the booted machine at once, each
// retried until it passes or timeout runs out (or the machine stops).
func runChecks(ctx context.Context, m *Machine, checks []Check, timeout time.Duration) []CheckResult {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-m.Exited():
			cancel()
		case <-ctx.Done():
		}
	}()
	res := make([]CheckResult, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = runCheck(ctx, m, c, timeout)
		}()
	}
	wg.Wait()
	return res
}

// try is one attempt of a check.
type try struct {
	passed bool
	detail string
	// answered: the guest replied (an HTTP response), only not as wanted
	answered bool
	// timedOut: a script still ran at the deadline and was killed
	timedOut bool
	output   string
}

func runCheck(ctx context.Context, m *Machine, c Check, timeout time.Duration) CheckResult {
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r := CheckResult{Spec: c.Spec}
	var last try
tries:
	for {
		var t try
		switch c.Kind {
		case CheckTCP:
			t = m.tryTCP(cctx, c)
		case CheckHTTP:
			t = m.tryHTTP(cctx, c)
		case CheckScript:
			t = m.tryScript(cctx, c)
		}
		// a network try cut by the deadline says less than the one before
		if t.passed || cctx.Err() == nil || c.Kind == CheckScript || last.detail == "" {
			last = t
		}
		if last.passed {
			break
		}
		select {
		case <-cctx.Done():
			break tries
		case <-time.After(checkRetry):
		}
	}
	r.Seconds = time.Since(start).Seconds()
	r.Passed, r.Output = last.passed, last.output
	within := "within " + shortDuration(timeout)
	switch {
	case last.passed:
		r.Detail = last.detail
	case ctx.Err() != nil:
		select {
		case <-m.Exited():
			r.Detail = "the machine stopped (" + last.detail + ")"
		default:
			r.Detail = "cancelled (" + last.detail + ")"
		}
	case c.Kind == CheckScript && last.timedOut:
		r.Detail = "did not end " + within + ": killed"
	case c.Kind == CheckScript:
		r.Detail = "did not pass " + within + " (" + last.detail + ")"
	case last.answered:
		r.Detail = "no right answer " + within + " (" + last.detail + ")"
	default:
		r.Detail = "no answer " + within + " (" + last.detail + ")"
	}
	return r
}

// shortDuration writes 3m0s as 3m and 1h0m0s as 1h.
func shortDuration(d time.Duration) string {
	s := d.Round(time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

func (m *Machine) hostAddr(guestPort int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(m.Forwards[guestPort]))
}

// tryTCP connects through the forward: a banner, or qemu's user network
// saying the guest accepted, passes; a connection closed at once means
// nothing listens on the guest's port.
func (m *Machine) tryTCP(ctx context.Context, c Check) try {
	if m.Forwards[c.Port] == 0 {
		return try{detail: fmt.Sprintf("guest port %d is not forwarded", c.Port)}
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", m.hostAddr(c.Port))
	if err != nil {
		return try{detail: err.Error()}
	}
	defer conn.Close()
	// qemu closes the connection when the guest refuses it; a slow
	// (emulated, loaded) guest may take seconds to answer either way
	buf := make([]byte, 64)
	for wait := time.Now().Add(tcpAnswerWait); ; {
		conn.SetReadDeadline(time.Now().Add(time.Second))
		n, err := conn.Read(buf)
		if n > 0 {
			return try{passed: true, detail: fmt.Sprintf("answered: %q", strings.TrimSpace(string(buf[:n])))}
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			return try{detail: "connection refused"}
		}
		// silent and open: the guest accepted, or has not answered yet
		if ctx.Err() != nil {
			return try{detail: "the guest did not accept the connection"}
		}
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ok, err := m.usernetEstablished(qctx, c.Port)
		cancel()
		switch {
		case err != nil:
			return try{detail: "ask qemu about the connection: " + err.Error()}
		case ok:
			return try{passed: true, detail: "connection accepted"}
		case time.Now().After(wait):
			return try{detail: "the guest did not accept the connection"}
		}
	}
}

// tryHTTP gets the page (no redirects followed: they would lead out of
// the guest; https certificates are not checked: the guest's name is not
// 127.0.0.1).
func (m *Machine) tryHTTP(ctx context.Context, c Check) try {
	if m.Forwards[c.Port] == 0 {
		return try{detail: fmt.Sprintf("guest port %d is not forwarded", c.Port)}
	}
	cl := &http.Client{
		Timeout:       15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{DisableKeepAlives: true,
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // #nosec G402 -- the guest's own certificate, reached on 127.0.0.1
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Scheme+"://"+m.hostAddr(c.Port)+c.Path, nil)
	if err != nil {
		return try{detail: err.Error()}
	}
	resp, err := cl.Do(req)
	if err != nil {
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) {
			err = ue.Unwrap()
		}
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			return try{detail: "connection closed without a reply"}
		}
		return try{detail: err.Error()}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case c.Status != 0 && resp.StatusCode != c.Status:
		return try{answered: true, detail: fmt.Sprintf("status %d, want %d", resp.StatusCode, c.Status)}
	case c.Status == 0 && (resp.StatusCode < 200 || resp.StatusCode > 299):
		return try{answered: true, detail: fmt.Sprintf("status %d, want 2xx", resp.StatusCode)}
	case c.Body != nil && !c.Body.Match(body):
		return try{answered: true, detail: fmt.Sprintf("status %d, the body (%d bytes) does not match ~%s", resp.StatusCode, len(body), c.Body)}
	}
	d := fmt.Sprintf("status %d", resp.StatusCode)
	if c.Body != nil {
		d += ", body matches ~" + c.Body.String()
	}
	return try{passed: true, detail: d}
}

// maxOutput is how much of a script's output is kept.
const maxOutput = 4096

// tryScript runs the program once, in its own process group, killed
// (with everything it started) when ctx ends.
func (m *Machine) tryScript(ctx context.Context, c Check) try {
	out, err := os.CreateTemp(m.RunDir, "check-*.out")
	if err != nil {
		return try{detail: err.Error()}
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd := exec.Command(c.Argv[0], c.Argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), m.CheckEnv()...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return try{detail: err.Error()}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var t try
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		err = <-done
		t.timedOut = true
	}
	// what it left running goes with it
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	t.output = tail(out.Name(), maxOutput)
	switch {
	case t.timedOut:
		t.detail = "killed"
	case err == nil:
		t.passed, t.detail = true, "exit status 0"
	default:
		t.detail = err.Error()
	}
	return t
}

// CheckEnv is the environment a script check gets: CAIRN_GUEST_HOST,
// CAIRN_GUEST_PORT_<N> (the host port of each forwarded guest port N)
// and CAIRN_SERIAL_LOG.
func (m *Machine) CheckEnv() []string {
	env := []string{"CAIRN_GUEST_HOST=127.0.0.1"}
	for gp, hp := range m.Forwards {
		env = append(env, fmt.Sprintf("CAIRN_GUEST_PORT_%d=%d", gp, hp))
	}
	if m.SerialLog != "" {
		env = append(env, "CAIRN_SERIAL_LOG="+m.SerialLog)
	}
	slices.Sort(env[1:])
	return env
}

func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(0, fi.Size()-n)
	b := make([]byte, fi.Size()-off)
	k, _ := f.ReadAt(b, off)
	return strings.ToValidUTF8(string(b[:k]), "?")
}

// failedCheck is the first check that did not pass, if any.
func failedCheck(res []CheckResult) (CheckResult, bool) {
	for _, r := range res {
		if !r.Passed {
			return r, true
		}
	}
	return CheckResult{}, false
}

// decideChecks runs the checks of a guest that booted (reason) and gives
// the verdict: booted when all passed; failed naming the first that did
// not; timeout when ctx ended (no verdict on the checks).
func decideChecks(ctx context.Context, m *Machine, o VerifyOptions, reason string, decide func(verdict, reason string) Result) Result {
	timeout := o.CheckTimeout
	if timeout <= 0 {
		timeout = DefaultCheckTimeout
	}
	checks := runChecks(ctx, m, o.Checks, timeout)
	var r Result
	switch f, failed := failedCheck(checks); {
	case ctx.Err() != nil:
		r = decide(VerdictTimeout, "cancelled during the checks: "+ctx.Err().Error())
	case failed:
		r = decide(VerdictFailed, fmt.Sprintf("check %s: %s", f.Spec, f.Detail))
	default:
		r = decide(VerdictBooted, fmt.Sprintf("%s; %s passed", reason, plural(len(checks), "check")))
	}
	r.Checks = checks
	return r
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
