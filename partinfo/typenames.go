package partinfo

import "fmt"

// GUID partition types with well-known meaning (upper-case text form).
const (
	GUIDEFISystem     = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	GUIDMSBasicData   = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
	GUIDMSReserved    = "E3C9E316-0B5C-4DB8-817D-F92DF00215AE"
	GUIDLDMMetadata   = "5808C8AA-7E8F-42E0-85D2-E1E90434CFB3"
	GUIDLDMData       = "AF9B60A0-1431-4F62-BC68-3311714A69AD"
	GUIDLinuxFS       = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
	GUIDLinuxSwap     = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"
	GUIDLinuxLVM      = "E6D6D379-F507-44C2-A23C-238F2A3DF928"
	GUIDBIOSBoot      = "21686148-6449-6E6F-744E-656564454649"
	guidUnusedEntry   = "00000000-0000-0000-0000-000000000000"
	mbrTypeLDM        = 0x42
	mbrTypeProtective = 0xEE
)

var gptTypeNames = map[string]string{
	GUIDEFISystem:                          "EFI System",
	GUIDMSBasicData:                        "Microsoft basic data",
	GUIDMSReserved:                         "Microsoft reserved",
	"DE94BBA4-06D1-4D40-A16A-BFD50179D6AC": "Windows recovery environment",
	GUIDLDMMetadata:                        "Windows LDM metadata (dynamic disk)",
	GUIDLDMData:                            "Windows LDM data (dynamic disk)",
	"E75CAF8F-F680-4CEE-AFA3-B001E56EFC2D": "Windows Storage Spaces",
	GUIDLinuxFS:                            "Linux filesystem",
	GUIDLinuxSwap:                          "Linux swap",
	GUIDLinuxLVM:                           "Linux LVM",
	"A19D880F-05FC-4D3B-A006-743F0F84911E": "Linux RAID",
	"4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709": "Linux root (x86-64)",
	"44479540-F297-41B2-9AF7-D131D5F0458A": "Linux root (x86)",
	"B921B045-1DF0-41C3-AF44-4C6F280D3FAE": "Linux root (ARM64)",
	"933AC7E1-2EB4-4F13-B844-0E14E2AEF915": "Linux /home",
	"3B8F8425-20E0-4F3B-907F-1A25A76F98E8": "Linux /srv",
	"BC13C2FF-59E6-4262-A352-B275FD6F7172": "Linux extended boot",
	"CA7D7CCB-63ED-4C53-861C-1742536059CC": "Linux LUKS",
	"7FFEC5C9-2D00-49B7-8941-3EA10A5586B7": "Linux dm-crypt",
	GUIDBIOSBoot:                           "BIOS boot",
	"48465300-0000-11AA-AA11-00306543ECAC": "Apple HFS+",
	"7C3457EF-0000-11AA-AA11-00306543ECAC": "Apple APFS",
	"AA31E02A-400F-11DB-9590-000C2911D1B8": "VMware VMFS",
	"9D275380-40AD-11DB-BF97-000C2911D1B8": "VMware reserved",
	"6A898CC3-1DD2-11B2-99A6-080020736631": "ZFS (Solaris /usr)",
	"516E7CB6-6ECF-11D6-8FF8-00022D09712B": "FreeBSD UFS",
}

var mbrTypeNames = map[byte]string{
	0x01: "FAT12", 0x04: "FAT16 <32M", 0x05: "Extended", 0x06: "FAT16",
	0x07: "NTFS/exFAT/HPFS", 0x0B: "FAT32 (CHS)", 0x0C: "FAT32 (LBA)",
	0x0E: "FAT16 (LBA)", 0x0F: "Extended (LBA)", 0x11: "Hidden FAT12",
	0x12: "Vendor diagnostics", 0x14: "Hidden FAT16 <32M", 0x16: "Hidden FAT16",
	0x17: "Hidden NTFS", 0x1B: "Hidden FAT32", 0x1C: "Hidden FAT32 (LBA)",
	0x1E: "Hidden FAT16 (LBA)", 0x27: "Windows recovery environment",
	mbrTypeLDM: "Windows dynamic disk (LDM)", 0x82: "Linux swap", 0x83: "Linux",
	0x85: "Linux extended", 0x8E: "Linux LVM", 0xA5: "FreeBSD", 0xA6: "OpenBSD",
	0xA8: "Darwin UFS", 0xAF: "HFS/HFS+", 0xBF: "Solaris", 0xDE: "Dell utility",
	mbrTypeProtective: "GPT protective", 0xEF: "EFI System", 0xFB: "VMware VMFS",
	0xFC: "VMware swap", 0xFD: "Linux RAID autodetect",
}

// GPTTypeName returns a friendly name for a GPT partition type GUID.
func GPTTypeName(guid string) string {
	if n, ok := gptTypeNames[guid]; ok {
		return n
	}
	return "unknown"
}

// MBRTypeName returns a friendly name for an MBR partition type byte.
func MBRTypeName(t byte) string {
	if n, ok := mbrTypeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("unknown (0x%02x)", t)
}

func isExtendedType(t byte) bool { return t == 0x05 || t == 0x0F || t == 0x85 }
