package ext4

// Feature flags from the superblock (Documentation/filesystems/ext4).
const (
	compatHasJournal   = 0x4
	compatSparseSuper2 = 0x200

	incompatCompression = 0x1
	incompatFiletype    = 0x2
	incompatRecover     = 0x4
	incompatJournalDev  = 0x8
	incompatMetaBG      = 0x10
	incompatExtents     = 0x40
	incompat64bit       = 0x80
	incompatMMP         = 0x100
	incompatFlexBG      = 0x200
	incompatEAInode     = 0x400
	incompatDirData     = 0x1000
	incompatCsumSeed    = 0x2000
	incompatLargeDir    = 0x4000
	incompatInlineData  = 0x8000
	incompatEncrypt     = 0x10000
	incompatCasefold    = 0x20000

	roCompatSparseSuper  = 0x1
	roCompatLargeFile    = 0x2
	roCompatHugeFile     = 0x8
	roCompatGdtCsum      = 0x10
	roCompatDirNlink     = 0x20
	roCompatExtraIsize   = 0x40
	roCompatQuota        = 0x100
	roCompatBigalloc     = 0x200
	roCompatMetadataCsum = 0x400
)

// supportedIncompat lists the INCOMPAT features this reader understands.
// needs_recovery is accepted: a crash-consistent snapshot of a mounted
// filesystem always carries it; the journal is not replayed.
const supportedIncompat = incompatFiletype | incompatRecover | incompatMetaBG |
	incompatExtents | incompat64bit | incompatMMP | incompatFlexBG |
	incompatEAInode | incompatCsumSeed | incompatLargeDir |
	incompatInlineData | incompatCasefold

// incompatNames names INCOMPAT bits for error messages.
var incompatNames = map[uint32]string{
	incompatCompression: "compression",
	incompatJournalDev:  "journal_dev (external journal device, not a filesystem)",
	incompatDirData:     "dirdata",
	incompatEncrypt:     "encrypt",
}

// ext4Only are features that mark a filesystem as ext4 rather than ext2/3.
const (
	ext4OnlyIncompat = incompatExtents | incompat64bit | incompatMMP | incompatFlexBG |
		incompatEAInode | incompatCsumSeed | incompatLargeDir | incompatInlineData |
		incompatEncrypt | incompatCasefold
	ext4OnlyRoCompat = roCompatHugeFile | roCompatGdtCsum | roCompatDirNlink |
		roCompatExtraIsize | roCompatQuota | roCompatBigalloc | roCompatMetadataCsum
)
