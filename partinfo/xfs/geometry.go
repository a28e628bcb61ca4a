package xfs

// geometry converts XFS block and inode numbers into byte offsets inside
// the partition. XFS numbers are split: the high bits name the allocation
// group, the low agblklog (+ inopblog) bits a block (inode) inside it.
type geometry struct {
	blockSize  int64
	blockLog   uint
	agBlocks   uint64
	agCount    uint64
	agBlkLog   uint
	inoPBLog   uint
	inodeSize  int64
	dblocks    uint64
	partSize   int64 // bytes readable in the partition
	dirBlkSize int64 // directory block size in bytes
	dirBlkFsb  uint64
}

// fsbToByte maps an encoded filesystem block number to a byte offset.
func (g *geometry) fsbToByte(fsb uint64) (int64, bool) {
	agno := fsb >> g.agBlkLog
	agbno := fsb & (1<<g.agBlkLog - 1)
	if agno >= g.agCount || agbno >= g.agBlocks {
		return 0, false
	}
	lin := agno*g.agBlocks + agbno
	if lin >= g.dblocks {
		return 0, false
	}
	return int64(lin) << g.blockLog, true
}

// extentOK reports whether count blocks starting at fsb stay inside one AG
// and inside the filesystem.
func (g *geometry) extentOK(fsb, count uint64) bool {
	agbno := fsb & (1<<g.agBlkLog - 1)
	if _, ok := g.fsbToByte(fsb); !ok || count == 0 {
		return false
	}
	if agbno+count > g.agBlocks {
		return false
	}
	agno := fsb >> g.agBlkLog
	return agno*g.agBlocks+agbno+count <= g.dblocks
}

// inoToByte maps an inode number to the byte offset of its dinode.
func (g *geometry) inoToByte(ino uint64) (int64, bool) {
	agino := ino & (1<<(g.agBlkLog+g.inoPBLog) - 1)
	agno := ino >> (g.agBlkLog + g.inoPBLog)
	if agno >= g.agCount {
		return 0, false
	}
	agbno := agino >> g.inoPBLog
	if agbno >= g.agBlocks {
		return 0, false
	}
	lin := agno*g.agBlocks + agbno
	if lin >= g.dblocks {
		return 0, false
	}
	slot := int64(agino & (1<<g.inoPBLog - 1))
	return int64(lin)<<g.blockLog + slot*g.inodeSize, true
}
