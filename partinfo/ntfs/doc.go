// Package ntfs is cairn's read-only NTFS reader, implementing
// partinfo.Filesystem on top of www.velocidex.com/golang/go-ntfs.
//
// go-ntfs reads data right, including sparse and compressed files, and
// its Ranges() gives the data/hole map. What cairn adds around it:
//
//   - directory listings come from the $I30 index entries themselves, one
//     name per entry, so every hard link keeps its own name (go-ntfs's
//     ListDir drops a file's second name); each entry is checked against
//     the $FILE_NAME attributes of the record it points to, so stale
//     entries in unused index blocks never show;
//   - modes are synthesised (directories 0555, files 0444, symbolic links
//     and junctions 0777 with ModeSymlink), times come from
//     $STANDARD_INFORMATION;
//   - every call into go-ntfs is serialised by a mutex (its caches are not
//     goroutine-safe) and runs behind recover().
//
// Inode numbers are MFT record numbers; the root directory is record 5.
// Metadata files ($MFT, $Bitmap, $Extend, ...) are hidden.
package ntfs
