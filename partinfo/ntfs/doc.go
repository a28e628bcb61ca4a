// Package ntfs is cairn's read-only NTFS reader, implementing
// partinfo.Filesystem on top of www.velocidex.com/golang/go-ntfs.
//
// go-ntfs parses MFT records, attributes and indexes. What cairn adds
// around it:
//
//   - file data is read by cairn's own runlist reader (stream.go): runs
//     are decoded and validated against the volume, compressed data is
//     decompressed one compression unit (2^n clusters) at a time with
//     LZNT1, and a read the volume cannot satisfy is an error, never
//     zeros;
//   - names are decoded from the raw UTF-16LE units with
//     partinfo.DecodeUTF16Name (no byte-order sniffing) and times from
//     the raw 100 ns ticks (no int64-nanosecond overflow);
//   - files with reparse tags cairn cannot translate show as marker
//     symbolic links ("unsupported-ntfs-reparse-point:0xTAG:name");
//   - directory listings come from the $I30 index entries themselves, one
//     name per entry, so every hard link keeps its own name (go-ntfs's
//     ListDir drops a file's second name); each entry is checked against
//     the $FILE_NAME attributes of the record it points to, so stale
//     entries in unused index blocks never show;
//   - modes are synthesised (directories 0555, files 0444, symbolic links
//     and junctions 0777 with ModeSymlink), times come from
//     $STANDARD_INFORMATION;
//   - extended attributes as ntfs-3g -o streams_interface=xattr shows
//     them (xattr.go): named data streams ("ADS") as listed user.<name>
//     attributes, and the get-only system.ntfs_attrib(_be) (DOS
//     attributes), system.ntfs_acl (security descriptor, from
//     $Secure:$SDS by security_id or the legacy $SECURITY_DESCRIPTOR;
//     sd.go), system.ntfs_times(_be), system.ntfs_crtime(_be) and
//     system.ntfs_reparse_data, through partinfo.XattrGetter;
//   - every call into go-ntfs is serialised by a mutex (its caches are not
//     goroutine-safe) and runs behind recover() (FS.guard: a panic in
//     go-ntfs fails that one record, directory or stream, and the volume
//     label is left empty); file data is read by cairn's own reader
//     outside that mutex. Open has no recover of its own: callers reach
//     it through partinfo/fsopen (partinfo.SafeOpen).
//
// Inode numbers are MFT record numbers; the root directory is record 5.
// Metadata files ($MFT, $Bitmap, $Extend, ...) are hidden.
package ntfs
