#!/usr/bin/env bash
# Installs the Debian packages cairn's tests, demo and benchmarks use
# (`bench` as the argument: also the benchmarks' reference servers).
# Idempotent: installs only what is missing.
set -euo pipefail
packages=(
  qemu-utils nbdkit libnbd-bin fio
  e2fsprogs xfsprogs btrfs-progs dosfstools mtools ntfs-3g
  fuse3 rsync fdisk gdisk parted util-linux bsdutils cryptsetup-bin lvm2 thin-provisioning-tools mdadm exfatprogs exfat-fuse ldmtool kmod
  ceph-mon ceph-osd radosgw ceph-common rclone
  attr acl libcap2-bin python3-aiosmtpd
  qemu-system-x86 ovmf syslinux syslinux-common grub-efi-amd64-bin grub-common busybox-static
  libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients libxml2-utils # restore kvm's tests: a private libvirtd (internal/libvirttest), virsh, virt-xml-validate (needs xmllint)
  systemd # systemd-analyze verify of dist/cairn.service; installing it does not make it init (no systemd-sysv)
  libnfs-utils qemu-block-extra # instant recovery: NFS clients of the export (nfs-ls, nfs-cp; qemu's nfs:// driver)
  chromium # the web console's browser tests (TestConsoleInBrowser, TestConsoleWalk: driven through the DevTools protocol)
)
# `install-deps.sh bench` (make bench) adds the benchmarks' reference
# servers. rpcbind stays out of make test's packages: where systemd is init,
# installing it starts rpcbind.socket on port 111, which the NFS export's
# tests need for their own portmapper (qemu's nfs:// driver asks port 111).
if [ "${1:-}" = bench ]; then
  packages+=(nfs-ganesha nfs-ganesha-vfs rpcbind) # BenchmarkNFSExport: the reference NFS server (the kernel has no nfsd here); each in its own network namespace
fi
missing=()
for p in "${packages[@]}"; do
  case "$p" in *-) continue ;; esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# versitygw, the second S3 engine of the remote tests (internal/versitytest),
# is a Go program with no Debian package: built from the Go module proxy
# (about a minute) into /usr/local/bin, unless that version is there.
versitygw_version=v1.8.0 # internal/versitytest.Version
export PATH="$PATH:/usr/local/go/bin"
have=$(command -v versitygw || true)
if [ -z "$have" ] || ! go version -m "$have" 2>/dev/null | grep -Eq "^[[:space:]]mod[[:space:]]+github.com/versity/versitygw[[:space:]]+${versitygw_version}[[:space:]]"; then
  echo "installing: versitygw ${versitygw_version}"
  gobin=$(mktemp -d)
  GOBIN="$gobin" go install "github.com/versity/versitygw/cmd/versitygw@${versitygw_version}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO install -m 0755 "$gobin/versitygw" /usr/local/bin/versitygw
  rm -rf "$gobin"
fi
