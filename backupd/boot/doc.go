// Package boot starts recovery points as local virtual machines with
// qemu and decides whether they boot.
//
// Vocabulary:
//
//   - Machine: one running qemu process shaped by a point's VM
//     configuration (backupd/vmconfig): firmware (SeaBIOS, or OVMF for
//     EFI, the secure boot build when the VM had secure boot), CPUs and
//     memory capped to the host, controllers mapped to qemu's closest
//     devices (pvscsi -> pvscsi; lsilogic, lsilogic-sas, buslogic ->
//     lsi53c895a; ahci -> ahci; nvme -> nvme; ide -> the chipset's IDE/AHCI
//     ports), NICs as vmxnet3, e1000 or e1000e.
//   - Disk: what a guest disk reads: a Backing (a file path or an NBD URI,
//     for cairn the point's disk served by backupd/nbdserve) behind a
//     throw-away qcow2 Overlay in the machine's run directory. Nothing is
//     ever written to the backing.
//   - Network: "none" (no NICs), "isolated" (NICs on a user-mode network
//     with restrict=on: no way out, the default) or "user" (NAT to the
//     host's networks).
//   - Accel: "kvm" when /dev/kvm is usable and the CPU has vmx/svm, else
//     "tcg" (Machine.Accel says which).
//   - QMP: qemu's control socket; Machine.Screendump saves the screen
//     (PPM, converted to PNG by PPMToPNG) and Stop powers off.
//   - Verdict: the result of Verify: VerdictBooted (the serial console
//     shows a login prompt or the pattern; or the screen settled on a
//     picture that is no known failure), VerdictFailed (blank screen that
//     never changes, "No bootable device"/"Boot failed", GRUB's prompt or
//     rescue shell, the EFI shell or no boot option, a kernel panic, a
//     blue stop screen) or VerdictTimeout.
//   - Check: an application check run once the guest booted (checks.go):
//     tcp:PORT (the guest accepts: a banner, or qemu's user network says
//     the forwarded connection is established), http://:PORT/PATH with
//     an optional =STATUS and ~REGEX, or script:/PROGRAM ARGS (exit 0,
//     own process group, killed at the CheckTimeout). VerifyOptions.Checks
//     turn booted into failed when one does not pass; Result.Checks holds
//     a CheckResult per check.
//   - Forward: a guest TCP port reachable from an ephemeral port on
//     127.0.0.1 (Options.Forwards, Machine.Forwards; qemu hostfwd on the
//     first NIC). The isolated network stays restricted: the guest reaches
//     nothing, the host reaches only the forwarded ports.
//
// Every qemu process is started with PR_SET_PDEATHSIG, in its own process
// group, and killed (and its overlays removed) when its Machine stops, on
// every path: Stop, context cancellation, a qemu crash.
package boot
