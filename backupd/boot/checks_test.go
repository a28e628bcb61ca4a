package boot

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd/vmconfig"
)

func TestParseCheck(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "check db")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(t.TempDir(), "plain")
	os.WriteFile(plain, nil, 0o644)
	for _, tc := range []struct {
		spec string
		want Check
		err  string
	}{
		{spec: "tcp:5432", want: Check{Kind: CheckTCP, Port: 5432}},
		{spec: "http://:8080", want: Check{Kind: CheckHTTP, Scheme: "http", Port: 8080, Path: "/"}},
		{spec: "http://:8080/health=204", want: Check{Kind: CheckHTTP, Scheme: "http", Port: 8080, Path: "/health", Status: 204}},
		{spec: "https://:443/login?next=/a~Sign (in|up)", want: Check{Kind: CheckHTTP, Scheme: "https", Port: 443, Path: "/login?next=/a"}},
		{spec: "http://:80/=301~moved", want: Check{Kind: CheckHTTP, Scheme: "http", Port: 80, Path: "/", Status: 301}},
		{spec: "script:'" + exe + "' --db \"a b\" c\\ d", want: Check{Kind: CheckScript, Argv: []string{exe, "--db", "a b", "c d"}}},
		{spec: "tcp:0", err: "want 1 to 65535"},
		{spec: "tcp:99999", err: "want 1 to 65535"},
		{spec: "tcp:ssh", err: "port"},
		{spec: "http://db.example.com:80/", err: "leave the host out"},
		{spec: "http://:80/x=20", err: "three digits"},
		{spec: "http://:80/a b", err: "without spaces"},
		{spec: "http://:80/~(", err: "REGEX"},
		{spec: "http://:80/=999", err: "100 to 599"},
		{spec: "script:", err: "no program"},
		{spec: "script:pg_isready -h x", err: "absolute path"},
		{spec: "script:/nonexistent/check", err: "no such file"},
		{spec: "script:" + plain, err: "not executable"},
		{spec: "script:'/bin/true", err: "unterminated"},
		{spec: "ping:10.0.0.1", err: "unknown kind"},
	} {
		got, err := ParseCheck(tc.spec)
		if tc.err != "" {
			if !errors.Is(err, ErrBadCheck) || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), tc.spec) {
				t.Errorf("%s: error %v, want ErrBadCheck naming the spec and %q", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.spec, err)
			continue
		}
		if got.Spec != tc.spec || got.Kind != tc.want.Kind || got.Port != tc.want.Port || got.Scheme != tc.want.Scheme ||
			got.Path != tc.want.Path || got.Status != tc.want.Status || !slices.Equal(got.Argv, tc.want.Argv) {
			t.Errorf("%s: %+v, want %+v", tc.spec, got, tc.want)
		}
	}
	c, _ := ParseCheck("https://:443/login?next=/a~Sign (in|up)")
	if c.Body == nil || !c.Body.MatchString("Sign up") || c.Body.MatchString("Sign off") {
		t.Errorf("body regex %v", c.Body)
	}
}

func TestSplitArgs(t *testing.T) {
	for in, want := range map[string][]string{
		"":                          nil,
		"  a  b\tc ":                {"a", "b", "c"},
		`a 'b c' "d \"e\" $f" g\ h`: {"a", "b c", `d "e" $f`, "g h"},
		`'' x`:                      {"", "x"},
		`$HOME *.txt | x`:           {"$HOME", "*.txt", "|", "x"},
	} {
		got, err := SplitArgs(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("SplitArgs(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := SplitArgs(`a "b`); err == nil {
		t.Error(`unterminated " accepted`)
	}
}

// TestUsernetHas reads qemu 7.2's "info usernet": only an established
// connection to the port counts (not the forward itself, not one in
// TIME_WAIT or still waiting for the guest).
func TestUsernetHas(t *testing.T) {
	info := `Hub -1 (net0):
  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ
  TCP[ESTABLISHED]   19       127.0.0.1 15432       10.0.2.15  5432     0     0
  TCP[TIME_WAIT]     17       127.0.0.1 18080       10.0.2.15  8080     0     0
  TCP[SYN_SENT]      16       127.0.0.1 12222       10.0.2.15    22     0     0
  TCP[HOST_FORWARD]  13       127.0.0.1 18080       10.0.2.15  8080     0     0
`
	for port, want := range map[int]bool{5432: true, 8080: false, 22: false, 15432: false} {
		if got := usernetHas(info, port); got != want {
			t.Errorf("port %d: %v, want %v", port, got, want)
		}
	}
}

// TestPlanForwards: the checked ports (only those) are forwarded from
// 127.0.0.1 through the first NIC of the restricted network; a machine
// without a NIC is refused before anything starts.
func TestPlanForwards(t *testing.T) {
	cfg := testConfig()
	m := &Machine{opts: Options{Config: cfg, Network: NetworkIsolated, Accel: "tcg", MaxCPUs: 1, MaxMemoryMB: 512,
		Disks: []Disk{{Name: "scsi0-0"}}, Forwards: []int{8080, 22, 8080}}, RunDir: t.TempDir()}
	args, err := m.plan()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok22 := m.Forwards[22]; !ok22 || len(m.Forwards) != 2 {
		t.Fatalf("forwards %v", m.Forwards)
	}
	var netdevs []string
	for i, a := range args {
		if a == "-netdev" {
			netdevs = append(netdevs, args[i+1])
		}
	}
	if len(netdevs) != 2 {
		t.Fatalf("netdevs %q", netdevs)
	}
	// qemu picks the host ports (read back with readForwards)
	want := "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:0-:22,hostfwd=tcp:127.0.0.1:0-:8080"
	if netdevs[0] != want || netdevs[1] != "user,id=net1,restrict=on" {
		t.Errorf("netdevs %q, want %q first and no forward on the second", netdevs, want)
	}
	m.Forwards = usernetForwards(usernetTwoNICs)
	env := strings.Join(m.CheckEnv(), " ")
	if !strings.Contains(env, "CAIRN_GUEST_HOST=127.0.0.1") || !strings.Contains(env, "CAIRN_GUEST_PORT_8080=39179") || !strings.Contains(env, "CAIRN_GUEST_PORT_22=46157") {
		t.Errorf("check environment %s", env)
	}

	for name, o := range map[string]Options{
		"no NICs":      {Config: &vmconfig.Config{Version: 1, Name: "n", Firmware: "bios", CPUs: 1, MemoryMB: 256}, Network: NetworkIsolated},
		"network none": {Config: cfg, Network: NetworkNone},
	} {
		o.Accel, o.Forwards, o.Disks = "tcg", []int{5432}, []Disk{{Name: "scsi0-0"}}
		m := &Machine{opts: o, RunDir: t.TempDir()}
		if _, err := m.plan(); !errors.Is(err, ErrNoNIC) || !strings.Contains(err.Error(), "5432") {
			t.Errorf("%s: %v, want ErrNoNIC naming the port", name, err)
		}
	}
}

// usernetTwoNICs is "info usernet" of qemu 7.2 with forwards on net0 and
// a connection on net1.
const usernetTwoNICs = `Hub -1 (net0):
  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ
  TCP[HOST_FORWARD]   9       127.0.0.1 39179       10.0.2.15  8080     0     0
  TCP[ESTABLISHED]   14       127.0.0.1 39179       10.0.2.15  8080     0     0
  TCP[HOST_FORWARD]   8       127.0.0.1 46157       10.0.2.15    22     0     0
Hub -1 (net1):
  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ
  TCP[HOST_FORWARD]   7       127.0.0.1 40000       10.0.2.15    23     0     0
`

func TestUsernetForwards(t *testing.T) {
	got := usernetForwards(usernetTwoNICs)
	if len(got) != 2 || got[8080] != 39179 || got[22] != 46157 {
		t.Errorf("forwards %v, want 8080->39179 and 22->46157 (net0 only)", got)
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{3 * time.Minute: "3m", 20 * time.Second: "20s", 90 * time.Second: "1m30s", time.Hour: "1h", 2*time.Hour + time.Minute: "2h1m"} {
		if got := shortDuration(d); got != want {
			t.Errorf("%s: %q, want %q", d, got, want)
		}
	}
}
