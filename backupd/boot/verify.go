package boot

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"time"
)

// Verdicts of a boot check.
const (
	VerdictBooted  = "booted"
	VerdictFailed  = "failed"
	VerdictTimeout = "timeout"
)

// DefaultLoginPattern matches a login prompt (or cairn's test guests'
// marker) on the serial console.
var DefaultLoginPattern = regexp.MustCompile(`(?m)(login:\s*$|CAIRN-GUEST-UP)`)

// failures are serial-console texts that mean the boot failed; the first
// match names the reason.
var failures = []struct {
	re     *regexp.Regexp
	reason string
}{
	{regexp.MustCompile(`Kernel panic - not syncing`), "kernel panic"},
	{regexp.MustCompile(`No bootable device`), "no bootable device"},
	{regexp.MustCompile(`Boot failed: .*\n(.*\n)*.*No bootable device`), "boot failed"},
	{regexp.MustCompile(`No bootable option or device was found`), "no bootable device (UEFI)"},
	{regexp.MustCompile(`grub rescue>`), "GRUB rescue shell"},
	{regexp.MustCompile(`(?m)grub>\s*$`), "GRUB prompt"},
	{regexp.MustCompile(`(?m)^Shell>\s*$|UEFI Interactive Shell`), "EFI shell"},
}

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// Timeout of the whole check (default 10 minutes).
	Timeout time.Duration
	// Pattern on the serial console that means booted (default
	// DefaultLoginPattern).
	Pattern *regexp.Regexp
	// Interval between screenshots (default 5 s).
	Interval time.Duration
	// Settle is how long screen and serial console must stay unchanged
	// on a non-blank picture to call it booted (default 90 s); a blank
	// screen unchanged that long is a failure.
	Settle time.Duration
	// Screenshot is the PNG the last screenshot is written to.
	Screenshot string
	// Checks run once the guest booted (the machine needs Options.Forwards
	// = CheckPorts(Checks)); booted stands only when every one passes.
	Checks []Check
	// CheckTimeout is how long each check may take to pass (default
	// DefaultCheckTimeout).
	CheckTimeout time.Duration
}

// Result is what a boot check found.
type Result struct {
	Verdict string `json:"verdict"`
	Reason  string `json:"reason"`
	// BootSeconds is the time from start to the verdict.
	BootSeconds float64   `json:"boot_seconds"`
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished"`
	Firmware    string    `json:"firmware"`
	Accel       string    `json:"accel"`
	CPUs        int       `json:"cpus"`
	MemoryMB    int64     `json:"memory_mb"`
	Notes       []string  `json:"notes,omitempty"`
	Pattern     string    `json:"pattern"`
	Screenshot  string    `json:"screenshot,omitempty"`
	SerialLog   string    `json:"serial_log,omitempty"`
	// Checks are the application checks run after the boot, in order.
	Checks []CheckResult `json:"checks,omitempty"`
}

// Verify watches a started machine until it decides, then stops it.
func Verify(ctx context.Context, m *Machine, o VerifyOptions) Result {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Minute
	}
	if o.Pattern == nil {
		o.Pattern = DefaultLoginPattern
	}
	if o.Interval <= 0 {
		o.Interval = 5 * time.Second
	}
	if o.Settle <= 0 {
		o.Settle = 90 * time.Second
	}
	start := time.Now()
	res := Result{Started: start.UTC(), Firmware: m.Firmware, Accel: m.Accel, CPUs: m.CPUs, MemoryMB: m.MemoryMB, Notes: m.Notes, Pattern: o.Pattern.String()}
	defer m.Stop()
	deadline := time.NewTimer(o.Timeout)
	defer deadline.Stop()
	// the serial console is read every second, the screen every Interval
	tick := time.NewTicker(min(time.Second, o.Interval))
	defer tick.Stop()
	nextShot := start.Add(o.Interval)
	var last screenStats
	var lastSerial int64 = -1
	changed := start
	shot := func() (screenStats, bool) {
		if o.Screenshot == "" {
			return screenStats{}, false
		}
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		st, err := m.Screendump(sctx, o.Screenshot)
		if err != nil {
			m.log.Warn("screenshot failed", "error", err)
			return st, false
		}
		res.Screenshot = o.Screenshot
		return st, true
	}
	decide := func(verdict, reason string) Result {
		shot() // the picture of the moment of the verdict
		res.Verdict, res.Reason = verdict, reason
		res.Finished = time.Now().UTC()
		res.BootSeconds = time.Since(start).Seconds()
		return res
	}
	booted := func(reason string) Result {
		if len(o.Checks) == 0 {
			return decide(VerdictBooted, reason)
		}
		return decideChecks(ctx, m, o, reason, decide)
	}
	for {
		serial, _ := os.ReadFile(m.SerialLog)
		if loc := o.Pattern.FindIndex(serial); loc != nil {
			return booted(fmt.Sprintf("serial console: %q", serial[loc[0]:loc[1]]))
		}
		for _, f := range failures {
			if f.re.Match(serial) {
				return decide(VerdictFailed, f.reason+" (serial console)")
			}
		}
		select {
		case <-ctx.Done():
			return decide(VerdictTimeout, "cancelled: "+ctx.Err().Error())
		case <-deadline.C:
			return decide(VerdictTimeout, fmt.Sprintf("no verdict within %s", o.Timeout))
		case <-m.Exited():
			res.Verdict, res.Reason = VerdictFailed, "the machine stopped"
			if err := m.Err(); err != nil {
				res.Reason += ": " + err.Error()
			}
			res.Finished = time.Now().UTC()
			res.BootSeconds = time.Since(start).Seconds()
			return res
		case <-tick.C:
		}
		if time.Now().Before(nextShot) {
			continue
		}
		nextShot = time.Now().Add(o.Interval)
		st, ok := shot()
		if !ok {
			continue
		}
		if st.Blue {
			return decide(VerdictFailed, "blue stop screen")
		}
		if st.Sum != last.Sum || int64(len(serial)) != lastSerial {
			last, lastSerial, changed = st, int64(len(serial)), time.Now()
			continue
		}
		if time.Since(changed) >= o.Settle {
			if st.Blank {
				return decide(VerdictFailed, fmt.Sprintf("blank screen, unchanged for %s", o.Settle.Round(time.Second)))
			}
			return booted(fmt.Sprintf("the screen settled (unchanged for %s) on no known failure", o.Settle.Round(time.Second)))
		}
	}
}
