package ext4

import (
	"encoding/binary"
	"fmt"

	"github.com/cairnbackup/cairn/partinfo"
)

const (
	xattrMagic       = 0xEA020000
	xattrIndexSystem = 7
)

// inlineDataXattr returns the value of the in-inode "system.data" extended
// attribute, which holds the part of inline data beyond i_block's 60 bytes.
func inlineDataXattr(area []byte) ([]byte, error) {
	le := binary.LittleEndian
	if len(area) < 4 || le.Uint32(area) != xattrMagic {
		return nil, fmt.Errorf("inline data without in-inode xattrs: %w", partinfo.ErrCorrupt)
	}
	body := area[4:]
	for pos := 0; pos+16 <= len(body); {
		if le.Uint32(body[pos:]) == 0 {
			break // end of entries
		}
		nameLen := int(body[pos])
		index := body[pos+1]
		valueOff := int(le.Uint16(body[pos+2:]))
		valueInum := le.Uint32(body[pos+4:])
		valueSize := int(le.Uint32(body[pos+8:]))
		if pos+16+nameLen > len(body) {
			return nil, fmt.Errorf("xattr entry name overruns the inode: %w", partinfo.ErrCorrupt)
		}
		name := string(body[pos+16 : pos+16+nameLen])
		if index == xattrIndexSystem && name == "data" {
			if valueInum != 0 {
				return nil, fmt.Errorf("system.data stored in an EA inode: %w", partinfo.ErrCorrupt)
			}
			if valueSize == 0 {
				return nil, nil
			}
			if valueOff+valueSize > len(body) {
				return nil, fmt.Errorf("system.data value overruns the inode: %w", partinfo.ErrCorrupt)
			}
			return body[valueOff : valueOff+valueSize], nil
		}
		pos += (16 + nameLen + 3) &^ 3
	}
	return nil, fmt.Errorf("inline data flag set but no system.data xattr: %w", partinfo.ErrCorrupt)
}

// inlineContent returns the whole content of an inline-data inode.
func inlineContent(n *inode) ([]byte, error) {
	if n.size <= int64(len(n.iblock)) {
		return n.iblock[:n.size], nil
	}
	rest, err := inlineDataXattr(n.inlineArea)
	if err != nil {
		return nil, err
	}
	if int64(len(n.iblock)+len(rest)) < n.size {
		return nil, fmt.Errorf("inline data holds %d bytes, size is %d: %w", len(n.iblock)+len(rest), n.size, partinfo.ErrCorrupt)
	}
	out := make([]byte, 0, n.size)
	out = append(out, n.iblock[:]...)
	return append(out, rest[:n.size-int64(len(n.iblock))]...), nil
}
