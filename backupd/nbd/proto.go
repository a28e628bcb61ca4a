package nbd

// Wire constants from the NBD protocol specification. All integers on the
// wire are big-endian.
const (
	magicNBD       uint64 = 0x4e42444d41474943 // "NBDMAGIC"
	magicOption    uint64 = 0x49484156454F5054 // "IHAVEOPT"
	magicOldstyle  uint64 = 0x00420281861253
	magicOptReply  uint64 = 0x0003e889045565a9
	magicRequest   uint32 = 0x25609513
	magicSimple    uint32 = 0x67446698
	magicStructure uint32 = 0x668e33ef
)

// Handshake flags (server, 16 bits) and client flags (32 bits).
const (
	flagFixedNewstyle uint16 = 1 << 0
	flagNoZeroes      uint16 = 1 << 1

	clientFlagFixedNewstyle uint32 = 1 << 0
	clientFlagNoZeroes      uint32 = 1 << 1
)

// Option codes.
const (
	optExportName     uint32 = 1
	optAbort          uint32 = 2
	optStartTLS       uint32 = 5
	optInfo           uint32 = 6
	optGo             uint32 = 7
	optStructuredRepl uint32 = 8
	optSetMetaContext uint32 = 10
)

// Option reply types. Error replies have bit 31 set.
const (
	repAck         uint32 = 1
	repInfo        uint32 = 3
	repMetaContext uint32 = 4

	repFlagError        uint32 = 1 << 31
	repErrUnsup         uint32 = repFlagError | 1
	repErrPolicy        uint32 = repFlagError | 2
	repErrInvalid       uint32 = repFlagError | 3
	repErrPlatform      uint32 = repFlagError | 4
	repErrTLSReqd       uint32 = repFlagError | 5
	repErrUnknown       uint32 = repFlagError | 6
	repErrShutdown      uint32 = repFlagError | 7
	repErrBlockSizeReqd uint32 = repFlagError | 8
	repErrTooBig        uint32 = repFlagError | 9
)

// NBD_INFO types used with NBD_OPT_INFO and NBD_OPT_GO.
const (
	infoExport    uint16 = 0
	infoBlockSize uint16 = 3
)

// Transmission flags of an export.
const (
	FlagHasFlags        uint16 = 1 << 0
	FlagReadOnly        uint16 = 1 << 1
	FlagSendFlush       uint16 = 1 << 2
	FlagSendFUA         uint16 = 1 << 3
	FlagRotational      uint16 = 1 << 4
	FlagSendTrim        uint16 = 1 << 5
	FlagSendWriteZeroes uint16 = 1 << 6
	FlagSendDF          uint16 = 1 << 7
	FlagCanMultiConn    uint16 = 1 << 8
	FlagSendResize      uint16 = 1 << 9
	FlagSendCache       uint16 = 1 << 10
	FlagSendFastZero    uint16 = 1 << 11
)

// Commands.
const (
	cmdRead        uint16 = 0
	cmdDisc        uint16 = 2
	cmdBlockStatus uint16 = 7
)

// Structured reply flags and chunk types.
const (
	replyFlagDone uint16 = 1 << 0

	replyTypeNone        uint16 = 0
	replyTypeOffsetData  uint16 = 1
	replyTypeOffsetHole  uint16 = 2
	replyTypeBlockStatus uint16 = 5
	replyTypeErrorBit    uint16 = 1 << 15
	replyTypeError       uint16 = replyTypeErrorBit | 1
	replyTypeErrorOffset uint16 = replyTypeErrorBit | 2
)

// Block status flags: StateHole and StateZero in base:allocation, StateDirty
// in qemu:dirty-bitmap:NAME.
const (
	// StateHole marks an extent that is not allocated on the server.
	StateHole uint32 = 1 << 0
	// StateZero marks an extent that reads as zeros.
	StateZero uint32 = 1 << 1
	// StateDirty marks a dirty extent in a qemu:dirty-bitmap:NAME context.
	StateDirty uint32 = 1 << 0
)

// Metadata context names.
const (
	// ContextBaseAllocation is the standard allocation context.
	ContextBaseAllocation = "base:allocation"
	// ContextDirtyBitmapPrefix prefixes qemu's dirty bitmap contexts.
	ContextDirtyBitmapPrefix = "qemu:dirty-bitmap:"
)

// Sizes and limits.
const (
	requestHeaderLen    = 28
	simpleReplyLen      = 16
	structuredHeaderLen = 20
	// defaultMaxBlock is the spec's default maximum payload when the server
	// sends no NBD_INFO_BLOCK_SIZE.
	defaultMaxBlock = 32 << 20
	// maxOptionReply bounds an option reply payload we are willing to read.
	maxOptionReply = 1 << 20
	// maxStatusPayload bounds a block status chunk we are willing to read:
	// 2M extents (qemu-nbd sends at most 128K per reply, nbdkit 1M), which
	// parse into 48 MiB.
	maxStatusPayload = 16<<20 + 4
)
