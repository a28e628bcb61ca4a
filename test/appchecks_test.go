package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd/boot"
	"github.com/cairnbackup/cairn/internal/guestimg"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// VM configurations of the application-check guest: BIOS, one disk on
// LSI Logic, one e1000 NIC (the driver the guest loads); and the same
// without a NIC.
const (
	netVMConfig = `{"version":1,"name":"netvm","firmware":"bios","cpus":1,"memory_mb":256,
	"controllers":[{"key":1000,"type":"lsilogic","bus":0}],
	"disks":[{"name":"scsi0-0","key":2000,"controller_key":1000,"bus":0,"unit":0,"capacity":67108864,"provisioning":"thin"}],
	"nics":[{"key":4000,"adapter_type":"e1000"}]}`
	noNICConfig = `{"version":1,"name":"nonic","firmware":"bios","cpus":1,"memory_mb":256,
	"controllers":[{"key":1000,"type":"lsilogic","bus":0}],
	"disks":[{"name":"scsi0-0","key":2000,"controller_key":1000,"bus":0,"unit":0,"capacity":67108864,"provisioning":"thin"}],"nics":[]}`
)

// probeScript asks the guest (its CGI /cgi-bin/probe) to reach the
// host's port $1 over its network, saves the answer in $3 and passes when
// the answer is "probe $1: $2"; it also needs the serial log it is given.
const probeScript = `#!/bin/sh
out=$(/bin/busybox wget -q -O - "http://$CAIRN_GUEST_HOST:$CAIRN_GUEST_PORT_8080/cgi-bin/probe?port=$1") || { echo "no answer from the guest"; exit 1; }
echo "$out" > "$3"
grep -q CAIRN-GUEST-UP "$CAIRN_SERIAL_LOG" || { echo "no serial log at $CAIRN_SERIAL_LOG"; exit 1; }
echo "$out"
test "$out" = "probe $1: $2"
`

// hangScript never ends; it writes its own pid and its child's to $1.
const hangScript = `#!/bin/sh
echo started
/bin/busybox sleep 1000 &
echo $! > "$1"
echo $$ >> "$1"
/bin/busybox sleep 1000
`

// countingListener accepts on 127.0.0.1 and counts the connections.
func countingListener(t *testing.T) (port int, count *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	count = new(atomic.Int64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			count.Add(1)
			c.Write([]byte("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi"))
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, count
}

// pointBootResult is what verify-boot --json prints.
type pointBootResult struct {
	Point string `json:"point"`
	boot.Result
}

func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestVerifyBootAppChecks boots a real guest with real services (busybox
// httpd on 8080, a TCP server on 5432 that waits for the client) on the
// isolated network and checks its applications: tcp + http with a body
// regex + a script pass (booted, result.json lists them); a port nobody
// listens on, a wrong HTTP status and a script that hangs (killed with
// what it started) fail, the verdict naming the first failed check.
// Isolation: asked from inside the isolated guest, the host's listener is
// unreachable and records no connection, while the same probe from a guest
// on the NAT network reaches it (the probe can tell). A VM without a NIC
// and a bad spec are refused before booting.
func TestVerifyBootAppChecks(t *testing.T) {
	testutil.RequireTools(t, append([]string{"qemu-system-x86_64", "qemu-img"}, guestimg.Tools...)...)
	img := guestImage(t, guestimg.KindNet, "apps")
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repo, "init")
	for vm, cfg := range map[string]string{"netvm": netVMConfig, "nonic": noNICConfig} {
		f := filepath.Join(dir, vm+".json")
		if err := os.WriteFile(f, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		mustCairn(t, "--repo", repo, "import", "--vm", vm, "--disk", "scsi0-0", "--vm-config", f, img)
	}
	tmp := filepath.Join(dir, "tmp")
	os.Mkdir(tmp, 0o700)
	env := []string{"TMPDIR=" + tmp}

	t.Run("refused before booting", func(t *testing.T) {
		res := runCairn(t, env, "--repo", repo, "verify-boot", "--vm", "nonic", "--check", "tcp:22")
		if res.code == 0 || !strings.Contains(res.stderr, "no network adapter") || !strings.Contains(res.stderr, "[22]") {
			t.Errorf("a network check of a VM without NIC: exit %d: %s", res.code, res.stderr)
		}
		if kept, _ := filepath.Glob(filepath.Join(repo, "bootchecks", "nonic", "*", "result.json")); len(kept) != 0 {
			t.Errorf("a refused check kept a verdict: %v", kept)
		}
		res = runCairn(t, env, "--repo", repo, "verify-boot", "--vm", "netvm", "--check", "http://db1:8080/")
		if res.code == 0 || !strings.Contains(res.stderr, `"http://db1:8080/"`) || !strings.Contains(res.stderr, "leave the host out") {
			t.Errorf("a check naming a host: exit %d: %s", res.code, res.stderr)
		}
	})

	scripts := t.TempDir()
	probe := writeScript(t, scripts, "probe.sh", probeScript)
	hang := writeScript(t, scripts, "hang.sh", hangScript)
	isoPort, isoConns := countingListener(t)
	natPort, natConns := countingListener(t)

	t.Run("boots", func(t *testing.T) {
		t.Run("checks pass", func(t *testing.T) {
			t.Parallel()
			answer := filepath.Join(scripts, "isolated.answer")
			res := runCairn(t, env, "--repo", repo, "verify-boot", "--vm", "netvm", "--timeout", "6m", "--json",
				"--check", "tcp:5432", "--check", "http://:8080/~cairn-app-ok apps",
				"--check-script", fmt.Sprintf("%s %d blocked '%s'", probe, isoPort, answer))
			var r pointBootResult
			if err := json.Unmarshal([]byte(res.stdout), &r); err != nil {
				t.Fatalf("verify-boot --json: %v: %s %s", err, res.stdout, res.stderr)
			}
			if res.code != 0 || r.Verdict != boot.VerdictBooted || !strings.Contains(r.Reason, "3 checks passed") || len(r.Checks) != 3 {
				t.Fatalf("exit %d, %+v", res.code, r)
			}
			for i, want := range []string{"connection accepted", "body matches", "exit status 0"} {
				if c := r.Checks[i]; !c.Passed || !strings.Contains(c.Detail, want) {
					t.Errorf("check %d: %+v, want passed: %s", i, c, want)
				}
			}
			ans, _ := os.ReadFile(answer)
			if got := strings.TrimSpace(string(ans)); got != fmt.Sprintf("probe %d: blocked", isoPort) {
				t.Errorf("the isolated guest's probe of the host: %q", got)
			}
			if kept, ok := boot.LoadResult(repo, "netvm", r.Point); !ok || len(kept.Checks) != 3 || !kept.Checks[2].Passed {
				t.Errorf("kept result %+v", kept)
			}
		})
		t.Run("checks fail", func(t *testing.T) {
			t.Parallel()
			pids := filepath.Join(scripts, "hang.pids")
			res := runCairn(t, env, "--repo", repo, "verify-boot", "--vm", "netvm", "--timeout", "6m", "--json", "--check-timeout", "20s",
				"--check", "tcp:5433", "--check", "http://:8080/nope=200", "--check", "http://:8080/health=200",
				"--check-script", hang+" "+pids)
			var r pointBootResult
			if err := json.Unmarshal([]byte(res.stdout), &r); err != nil {
				t.Fatalf("verify-boot --json: %v: %s %s", err, res.stdout, res.stderr)
			}
			if res.code == 0 || r.Verdict != boot.VerdictFailed || r.Reason != "check tcp:5433: no answer within 20s (connection refused)" || len(r.Checks) != 4 {
				t.Fatalf("exit %d, %+v", res.code, r)
			}
			for i, want := range []struct {
				passed bool
				detail string
			}{{false, "connection refused"}, {false, "status 404, want 200"}, {true, "status 200"}, {false, "did not end within 20s: killed"}} {
				if c := r.Checks[i]; c.Passed != want.passed || !strings.Contains(c.Detail, want.detail) {
					t.Errorf("check %d: %+v, want passed %v: %s", i, c, want.passed, want.detail)
				}
			}
			if !strings.Contains(r.Checks[3].Output, "started") {
				t.Errorf("the hanging script's output was not kept: %q", r.Checks[3].Output)
			}
			data, err := os.ReadFile(pids)
			if err != nil {
				t.Fatalf("the hanging script never ran: %v", err)
			}
			for _, f := range strings.Fields(string(data)) {
				pid, _ := strconv.Atoi(f)
				if pid > 0 && procRunning(pid) {
					t.Errorf("process %d of the killed script is still running", pid)
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			// kept beside the point with the screenshot and serial log
			kept, ok := boot.LoadResult(repo, "netvm", r.Point)
			if !ok || kept.Verdict != boot.VerdictFailed || len(kept.Checks) != 4 || kept.Screenshot == "" || kept.SerialLog == "" {
				t.Errorf("kept result %+v", kept)
			}
		})
		t.Run("probe reaches the host from the NAT network", func(t *testing.T) {
			t.Parallel()
			answer := filepath.Join(scripts, "nat.answer")
			checks, err := boot.ParseChecks([]string{fmt.Sprintf("script:%s %d reached %s", probe, natPort, answer)})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			run := t.TempDir()
			m, err := boot.Start(ctx, boot.Options{Firmware: "bios", Network: boot.NetworkUser, RunDir: run,
				Disks: []boot.Disk{{Name: "d0", Backing: img}}, Forwards: []int{guestimg.NetHTTPPort}, MaxMemoryMB: 256})
			if err != nil {
				t.Fatal(err)
			}
			r := boot.Verify(ctx, m, boot.VerifyOptions{Timeout: 6 * time.Minute, Checks: checks, CheckTimeout: 2 * time.Minute})
			ans, _ := os.ReadFile(answer)
			if r.Verdict != boot.VerdictBooted || natConns.Load() == 0 {
				t.Errorf("the NAT guest's probe: %+v, answer %q, %d connections", r, ans, natConns.Load())
			}
		})
		t.Run("a guest whose network never comes up does not pass a tcp check", func(t *testing.T) {
			// qemu accepts the forwarded connection itself; the guest (no
			// NIC driver) never answers it
			t.Parallel()
			checks, err := boot.ParseChecks([]string{"tcp:5432"})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			m, err := boot.Start(ctx, boot.Options{Firmware: "bios", RunDir: t.TempDir(), MaxMemoryMB: 256,
				Disks: []boot.Disk{{Name: "d0", Backing: guestImage(t, guestimg.KindBIOS, "nonet")}}, Forwards: boot.CheckPorts(checks)})
			if err != nil {
				t.Fatal(err)
			}
			r := boot.Verify(ctx, m, boot.VerifyOptions{Timeout: 6 * time.Minute, Checks: checks, CheckTimeout: 10 * time.Second})
			if r.Verdict != boot.VerdictFailed || r.Reason != "check tcp:5432: no answer within 10s (the guest did not accept the connection)" {
				t.Errorf("%+v", r)
			}
		})
	})
	if n := isoConns.Load(); n != 0 {
		t.Errorf("the isolated guest reached the host's listener %d times", n)
	}
	if left := cairnBootProcs(); len(left) != 0 {
		t.Errorf("qemu processes left: %v", left)
	}
}

// procRunning reports whether pid exists and is not a zombie.
func procRunning(pid int) bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(st), ')')
	return i > 0 && !strings.HasPrefix(string(st[i+1:]), " Z")
}
