package kvmrestore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// DefaultURI is the libvirt connection a domain is defined on by default.
const DefaultURI = "qemu:///system"

// ErrDomainExists means libvirt has a domain of the restore's name.
var ErrDomainExists = errors.New("libvirt has a domain of that name")

// Virsh runs virsh against one libvirt connection.
type Virsh struct {
	// URI is the connection (DefaultURI when empty).
	URI string
}

func (v Virsh) uri() string {
	if v.URI == "" {
		return DefaultURI
	}
	return v.URI
}

func (v Virsh) run(ctx context.Context, args ...string) (string, error) {
	if _, err := exec.LookPath("virsh"); err != nil {
		return "", fmt.Errorf("virsh not found: %w: install the Debian package libvirt-clients", ErrToolMissing)
	}
	cmd := exec.CommandContext(ctx, "virsh", append([]string{"-q", "-c", v.uri()}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("virsh -c %s %s: %v: %s", v.uri(), strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// Check connects and refuses a name libvirt already has a domain of
// (defining would replace that domain's definition).
func (v Virsh) Check(ctx context.Context, name string) error {
	out, err := v.run(ctx, "list", "--all", "--name")
	if err != nil {
		return err
	}
	if slices.Contains(strings.Fields(out), name) {
		return fmt.Errorf("%w: %q on %s", ErrDomainExists, name, v.uri())
	}
	return nil
}

// Define defines the domain of xmlFile.
func (v Virsh) Define(ctx context.Context, xmlFile string) error {
	_, err := v.run(ctx, "define", xmlFile)
	return err
}

// Start starts the domain.
func (v Virsh) Start(ctx context.Context, name string) error {
	_, err := v.run(ctx, "start", name)
	return err
}

// Remove destroys (if running) and undefines the domain, with its NVRAM
// file (--nvram) but never its disks.
func (v Virsh) Remove(ctx context.Context, name string) error {
	_, _ = v.run(ctx, "destroy", name)
	_, err := v.run(ctx, "undefine", "--nvram", name)
	return err
}

// Unreachable lists the directories on the way to dir that others cannot
// enter (no o+x): qemu:///system runs qemu as its own user
// (libvirt-qemu), which then cannot open the disks.
func Unreachable(dir string) []string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil
	}
	var out []string
	for d := abs; ; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 {
			out = append([]string{d}, out...)
		}
		if d == filepath.Dir(d) {
			break
		}
	}
	return out
}

// qemuGroups are the groups qemu:///system runs qemu in (libvirt's
// qemu.conf default): Debian and Ubuntu's, then Red Hat's and SUSE's.
var qemuGroups = []string{"libvirt-qemu", "qemu"}

// ShareWithQEMU gives the group libvirt runs qemu in read access to the
// restore's disks and UEFI variables (mode 0640): libvirt reads a qcow2
// image's header as that user before it takes ownership of the file. It
// returns the group ("" when this machine has none of them: nothing is
// changed).
func (r *Result) ShareWithQEMU() (string, error) {
	for _, name := range qemuGroups {
		g, err := user.LookupGroup(name)
		if err != nil {
			continue
		}
		gid, err := strconv.Atoi(g.Gid)
		if err != nil {
			continue
		}
		files := []string{}
		for _, d := range r.Disks {
			files = append(files, d.File)
		}
		if r.NVRAM != "" {
			files = append(files, r.NVRAM)
		}
		for _, f := range files {
			if err := os.Chown(f, -1, gid); err != nil {
				return "", err
			}
			if err := os.Chmod(f, 0o640); err != nil {
				return "", err
			}
		}
		return name, nil
	}
	return "", nil
}
