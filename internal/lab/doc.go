// Package lab is `cairn lab`: a simulated vCenter (internal/esxsim)
// running in-process with a few VMs whose disks hold real content, and a
// guest writer that keeps changing that content, so that cairn can be tried
// (and tested end to end) without a real vSphere.
//
// Every VM's first disk carries a GPT with one FAT32 partition holding a
// small OS-like tree (/etc/hostname, /etc/os-release, /var/log/app.log,
// /home/user/notes.txt, a few hundred documents). Even-numbered VMs have a
// second disk with an MBR, a FAT32 data partition and, when mkfs.ext4 is
// installed, an ext4 partition made with `mkfs.ext4 -d`; it never changes.
// The FAT32 volumes are written in-process with go-diskfs (read back with
// cairn's own reader); no external tool is needed.
//
// The guest writer works on a private copy of each changing disk: every
// Interval it overwrites, adds and deletes a few files with go-diskfs and
// then copies the 64 KiB blocks that differ into the running disk with
// GuestWriter.SyncFromImage. That call holds the simulator's lock, so a
// snapshot sees either all of a batch or none of it. Each batch is numbered;
// the number is written to /var/lib/cairn-lab/generation inside the guest
// and every file change is appended to the VM's journal
// (Dir/journal/<vm>.jsonl), so a test can rebuild exactly what a recovery
// point must contain (ReadJournal, State).
package lab
