package nbdserve

// Wire constants of the NBD protocol (server side). The transmission
// flags and block status states are backupd/nbd's.
const (
	magicNBD       uint64 = 0x4e42444d41474943 // "NBDMAGIC"
	magicOption    uint64 = 0x49484156454F5054 // "IHAVEOPT"
	magicOptReply  uint64 = 0x0003e889045565a9
	magicRequest   uint32 = 0x25609513
	magicSimple    uint32 = 0x67446698
	magicStructure uint32 = 0x668e33ef

	flagFixedNewstyle uint16 = 1 << 0
	flagNoZeroes      uint16 = 1 << 1

	clientFlagFixedNewstyle uint32 = 1 << 0
	clientFlagNoZeroes      uint32 = 1 << 1

	optExportName      uint32 = 1
	optAbort           uint32 = 2
	optList            uint32 = 3
	optStartTLS        uint32 = 5
	optInfo            uint32 = 6
	optGo              uint32 = 7
	optStructuredReply uint32 = 8
	optListMetaContext uint32 = 9
	optSetMetaContext  uint32 = 10

	repAck          uint32 = 1
	repServer       uint32 = 2
	repInfo         uint32 = 3
	repMetaContext  uint32 = 4
	repErrUnsup     uint32 = 1<<31 | 1
	repErrInvalid   uint32 = 1<<31 | 3
	repErrUnknown   uint32 = 1<<31 | 6
	repErrTooBig    uint32 = 1<<31 | 9
	infoExport      uint16 = 0
	infoBlockSize   uint16 = 3
	cmdRead         uint16 = 0
	cmdWrite        uint16 = 1
	cmdDisc         uint16 = 2
	cmdFlush        uint16 = 3
	cmdTrim         uint16 = 4
	cmdCache        uint16 = 5
	cmdWriteZeroes  uint16 = 6
	cmdBlockStatus  uint16 = 7
	cmdFlagFUA      uint16 = 1 << 0
	cmdFlagReqOne   uint16 = 1 << 3
	replyFlagDone   uint16 = 1 << 0
	replyOffsetData uint16 = 1
	replyBlockStat  uint16 = 5
	replyError      uint16 = 1<<15 | 1

	errPerm     uint32 = 1
	errIO       uint32 = 5
	errNoMem    uint32 = 12
	errInval    uint32 = 22
	errNoSpc    uint32 = 28
	errOverflow uint32 = 75
	errNotSup   uint32 = 95

	// maxPayload bounds a READ or WRITE (the spec's default maximum).
	maxPayload = 32 << 20
	// maxOption bounds an option's data.
	maxOption = 64 << 10
	// baseAllocationID is the id of the one metadata context served.
	baseAllocationID uint32 = 1
	// maxStatusDescriptors bounds one block status reply.
	maxStatusDescriptors = 1 << 16
)
