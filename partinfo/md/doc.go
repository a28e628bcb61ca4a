// Package md reads Linux MD (software RAID) arrays from the disks of a
// recovery point, read-only and without the md driver.
//
// # Vocabulary
//
//   - Member: a whole disk or partition with an MD superblock: version 1.1
//     at offset 0, 1.2 at 4 KiB, 0.90 in the last 64 KiB-aligned 64 KiB,
//     1.0 8-16 sectors before the end. Superblock checksums are verified
//     (0.90: the 32-bit words summed; 1.x: calc_sb_1_csum). The member's
//     data area starts at data_offset (0 for 0.90 and 1.0).
//   - Slot (role): the member's position in the array; spares and faulty
//     members have none.
//   - Array: members sharing an array UUID. The superblock with the most
//     events describes it; members more than one event behind are stale
//     and left out (Problems says so).
//   - Chunk: the unit of striping. Levels read: linear, raid0 (members of
//     different sizes as strip zones: zone k stripes over the members
//     larger than the k-th smallest; the original or alternate layout
//     picks a chunk's member in later zones), raid1 (any member with the
//     data), raid10 with near, far and offset copies (also in far sets:
//     layout bits 17-18, far copies rotating within groups of members),
//     raid4, raid5 (all six layouts) and raid6 (left- and right-symmetric
//     and the DDF rotating layouts 8, 9, 10 that dm-raid's raid6_zr/nr/nc
//     use),
//     complete or with one member missing (rebuilt from P by XOR; raid6's Q
//     is never needed for one missing member).
//   - Volume: an io.ReaderAt over the array's bytes.
//
// The md driver is not needed: tests lay arrays out by hand from the
// published format and check every superblock with mdadm --examine.
package md
