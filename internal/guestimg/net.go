package guestimg

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// KindNet is a BIOS guest with a network and applications: its init
// loads the e1000 driver (a module of the same Debian kernel package as
// its vmlinuz), gives eth0 qemu's user-network address (10.0.2.15/24,
// gateway 10.0.2.2), prints the marker and then, after NetStartDelay,
// starts the services of NetHTTPPort and NetTCPPort. Boot it with one
// e1000 NIC.
const KindNet = "net"

// netRecipe is the cache key version of KindNet (the other kinds keep
// theirs).
const netRecipe = "net3"

// Services of a KindNet guest.
const (
	// NetHTTPPort serves busybox httpd: "/" is NetPage, /health is
	// "ok", /cgi-bin/probe?port=N tries for 10 s an HTTP GET of 10.0.2.2:N (the
	// host, seen from qemu's user network) and answers "probe N:
	// reached" or "probe N: blocked".
	NetHTTPPort = 8080
	// NetTCPPort is a TCP echo server that, like a database, waits for
	// the client to speak first.
	NetTCPPort = 5432
	// NetStartDelay is how long after the marker the services start
	// (so a check has to wait for them).
	NetStartDelay = 3
)

// NetPage is the body of a KindNet guest's "/": "cairn-app-ok <marker>".
func NetPage(marker string) string { return "cairn-app-ok " + marker + "\n" }

// e1000Module is the driver's path inside the kernel package.
const e1000Module = "kernel/drivers/net/ethernet/intel/e1000/e1000.ko"

// netKernel returns a Debian kernel and its e1000 module, taken from one
// linux-image package (so they match) and cached in cache/net-kernel.
func netKernel(cache string) (kernel, module string, err error) {
	dir := filepath.Join(cache, "net-kernel")
	kernel, module = filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "e1000.ko")
	if _, err := os.Stat(module); err == nil {
		return kernel, module, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	tmp, err := os.MkdirTemp(cache, "kernel-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(tmp)
	deb, err := kernelPackage(tmp)
	if err != nil {
		return "", "", err
	}
	if err := run(tmp, "sh", "-c", "dpkg-deb --fsys-tarfile \"$1\" | tar -x --wildcards './boot/vmlinuz-*' './lib/modules/*/"+e1000Module+"'", "sh", deb); err != nil {
		return "", "", err
	}
	ks, _ := filepath.Glob(filepath.Join(tmp, "boot", "vmlinuz-*"))
	ms, _ := filepath.Glob(filepath.Join(tmp, "lib", "modules", "*", e1000Module))
	if len(ks) != 1 || len(ms) != 1 {
		return "", "", fmt.Errorf("%s: %d kernels and %d e1000 modules, want one of each", deb, len(ks), len(ms))
	}
	if err := os.Rename(ks[0], kernel); err != nil {
		return "", "", err
	}
	// the module last: its presence says the pair is complete
	if err := os.Rename(ms[0], module); err != nil {
		return "", "", err
	}
	return kernel, module, nil
}

// netInit is the init of a KindNet guest.
func netInit(marker string) string {
	bb := "/bin/busybox "
	return "#!/bin/busybox sh\n" +
		bb + "mkdir -p /proc /dev /sys /tmp\n" +
		bb + "mount -t proc proc /proc\n" +
		bb + "mount -t sysfs sys /sys\n" +
		bb + "mount -t devtmpfs dev /dev 2>/dev/null\n" +
		bb + "insmod /lib/e1000.ko\n" +
		bb + "ip link set lo up\n" +
		"for i in 1 2 3 4 5 6 7 8 9 10; do " + bb + "ip link show eth0 >/dev/null 2>&1 && break; " + bb + "sleep 1; done\n" +
		bb + "ip addr add 10.0.2.15/24 dev eth0\n" +
		bb + "ip link set eth0 up\n" +
		bb + "ip route add default via 10.0.2.2\n" +
		"for c in /dev/ttyS0 /dev/tty0; do echo \"" + MarkerPrefix + " " + marker + "\" > $c; done\n" +
		"echo 'cairn guest login: ' > /dev/tty0\n" +
		bb + "sleep " + fmt.Sprint(NetStartDelay) + "\n" +
		bb + fmt.Sprintf("httpd -p %d -h /www\n", NetHTTPPort) +
		bb + fmt.Sprintf("nc -ll -p %d -e /bin/busybox cat &\n", NetTCPPort) +
		"echo CAIRN-SERVICES-UP > /dev/ttyS0\n" +
		"while :; do " + bb + "sleep 3600; done\n"
}

// netProbe is the CGI behind /cgi-bin/probe?port=N. (busybox 1.35 static
// wget -T segfaults: the time limit is busybox timeout.)
const netProbe = `#!/bin/busybox sh
echo "Content-Type: text/plain"
echo
p="${QUERY_STRING#port=}"
case "$p" in *[!0-9]*|"") echo "probe: want ?port=N"; exit 0;; esac
if /bin/busybox timeout 10 /bin/busybox wget -q -O /dev/null "http://10.0.2.2:$p/" 2>/dev/null; then echo "probe $p: reached"; else echo "probe $p: blocked"; fi
`

// netInitrd writes a KindNet initramfs.
func netInitrd(path, marker, module string) error {
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return fmt.Errorf("busybox-static: %w", err)
	}
	ko, err := os.ReadFile(module)
	if err != nil {
		return err
	}
	return writeCpio(path, bb, netInit(marker), []cpioFile{
		{"lib", 0o40755, nil},
		{"lib/e1000.ko", 0o100644, ko},
		{"sys", 0o40755, nil},
		{"tmp", 0o41777, nil},
		{"www", 0o40755, nil},
		{"www/index.html", 0o100644, []byte(NetPage(marker))},
		{"www/health", 0o100644, []byte("ok\n")},
		{"www/cgi-bin", 0o40755, nil},
		{"www/cgi-bin/probe", 0o100755, []byte(netProbe)},
	})
}

// netKernelAndInitrd is kernelAndInitrd for KindNet.
func netKernelAndInitrd(spec Spec, tmp string) (kernel, initrd string, err error) {
	kernel, module, err := netKernel(spec.Cache)
	if err != nil {
		return "", "", err
	}
	initrd = filepath.Join(tmp, "initrd.img")
	if strings.ContainsAny(spec.Marker, "\"$`\\\n") {
		return "", "", fmt.Errorf("guestimg: marker %q: no quotes, $, backquotes, backslashes or newlines", spec.Marker)
	}
	return kernel, initrd, netInitrd(initrd, spec.Marker, module)
}
