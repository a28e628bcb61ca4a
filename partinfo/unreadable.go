package partinfo

import "fmt"

// UnreadableError says that a volume holds something cairn cannot browse.
// Its message is the text of the ERROR.txt a user sees in the mount, so
// it explains what the volume is and how to get at its data.
type UnreadableError struct {
	What string // what the volume holds, e.g. "an LVM2 physical volume"
	Why  string // why cairn cannot show it and what to do instead
}

func (e *UnreadableError) Error() string {
	return fmt.Sprintf("This volume holds %s. %s", e.What, e.Why)
}

// exportHint is the common way out: the raw image is always available.
const exportHint = "The raw disk image is always available under disks/: export it " +
	"(cp --sparse=always) or attach it to a machine that understands this format."

// Unreadable returns the UnreadableError for a detection that cairn cannot
// open as a filesystem, or nil when the type has a reader.
func Unreadable(d Detection) *UnreadableError {
	switch d.Type {
	case "lvm2":
		return &UnreadableError{What: "an LVM2 physical volume" + withID(d),
			Why: "Its logical volumes are assembled across the VM's disks under fs/lvm/<vg>/<lv>/ of this point " +
				"(`cairn partitions` lists them; fs/lvm/ERROR.txt says what kept a volume group from being assembled). " + exportHint}
	case TypeMDMember:
		return &UnreadableError{What: "a member of a Linux MD RAID array" + withID(d),
			Why: "The array is assembled across the VM's disks under fs/md/<array>/ of this point " +
				"(fs/md/ERROR.txt says what kept it from being assembled). " + exportHint}
	case "bitlocker":
		return &UnreadableError{What: "a BitLocker-encrypted volume",
			Why: "cairn does not decrypt BitLocker: attach the exported disk image to a Windows machine and " +
				"unlock it with the password or recovery key (or use dislocker on Linux). " + exportHint}
	case "luks":
		return &UnreadableError{What: "a " + orDefault(d.Version, "LUKS") + " encrypted volume" + withID(d),
			Why: "cairn does not hold encryption keys and cannot show encrypted data: export the disk image, " +
				"then on Linux run losetup -P -r IMAGE and cryptsetup open --readonly with the passphrase. " + exportHint}
	case "refs":
		return &UnreadableError{What: "a ReFS volume",
			Why: "cairn has no ReFS reader: attach the exported disk image to a Windows Server machine " +
				"(Disk Management, Attach VHD, or mount the raw image with a disk-image tool). " + exportHint}
	case TypeLDM:
		return &UnreadableError{What: "part of a Windows dynamic disk (LDM)",
			Why: "The dynamic volumes are assembled across the VM's disks under fs/ldm/<volume>/ of this point " +
				"(RAID-5 volumes excepted: for those export all disks of the machine and attach them to a Windows " +
				"machine, Disk Management, Import Foreign Disks). " + exportHint}
	case "swap":
		return &UnreadableError{What: "Linux swap space" + withID(d),
			Why: "Swap holds no files: it is the paging area of the running system and has nothing to restore."}
	case "iso9660":
		return &UnreadableError{What: "an ISO 9660 (CD/DVD) filesystem" + withID(d),
			Why: "cairn does not browse ISO images: export the disk image and open it with any ISO tool " +
				"(mount -o ro,loop, 7z, bsdtar). " + exportHint}
	case "ext2", "ext3", "ext4", "xfs", "ntfs", "fat12", "fat16", "fat32", "exfat", "btrfs":
		return nil
	default:
		return &UnreadableError{What: "no filesystem cairn recognises",
			Why: "It may be empty, unformatted, encrypted by software cairn does not know, or a format " +
				"cairn has no reader for. " + exportHint}
	}
}

func withID(d Detection) string {
	switch {
	case d.Label != "" && d.UUID != "":
		return fmt.Sprintf(" (label %q, UUID %s)", d.Label, d.UUID)
	case d.UUID != "":
		return " (UUID " + d.UUID + ")"
	case d.Label != "":
		return fmt.Sprintf(" (label %q)", d.Label)
	}
	return ""
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
