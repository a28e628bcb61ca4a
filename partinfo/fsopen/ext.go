package fsopen

import "github.com/cairnbackup/cairn/partinfo/ext4"

// addExt registers the ext2/3/4 reader for every ext generation.
func addExt(m map[string]Opener) {
	for _, t := range []string{"ext2", "ext3", "ext4"} {
		m[t] = ext4.Open
	}
}
