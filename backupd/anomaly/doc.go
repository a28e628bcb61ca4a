// Package anomaly finds suspicious changes (ransomware encrypting a guest's
// files) at backup time, from figures measured while the blocks are copied.
//
// Vocabulary:
//
//   - Meter: a blockmap.ContentMeter for one disk of a new point. It is
//     shown every data block the point stores (changed and not zero:
//     unchanged, zero and trimmed blocks never reach it) and takes a
//     sample of each (four 512-byte slices spread over the block). A
//     slice whose byte entropy is at least 7 bits per byte looks
//     encrypted or compressed (text, code and file system metadata stay
//     far below; base64 is at most 6).
//   - Figures: what a Meter keeps with the point (blockmap.DiskInfo.Content):
//     the bytes written and, of those, the high-entropy bytes. A point's
//     figures are the sum over its disks that had an earlier version (a
//     disk's first backup says nothing about change).
//   - Baseline: the VM's own recent points with figures (the last
//     Thresholds.BaselinePoints, leaving out unacknowledged suspicious
//     ones): their share of high-entropy bytes and their median volume.
//   - Verdict: normal, suspicious or no-baseline, with a one-line reason,
//     decided once as the point is committed (blockmap.PointOptions.Judge)
//     and kept in the point (blockmap.Point.Verdict). Suspicious needs
//     both absolute floors (MinBytes, MinShare) and a rise over the
//     baseline (ShareRise points of share and VolumeFactor times the
//     usual volume), so a VM that always writes compressed data is not
//     flagged every day.
//   - Ack: an administrator's acknowledgement that a suspicious point is
//     a false alarm, appended to <repo>/anomaly-acks.jsonl (points never
//     change). An acknowledged point counts as clean.
//   - Guard: the blockmap.PruneGuard that keeps a VM's last clean point
//     (the newest point older than its first unacknowledged suspicious
//     one that is not itself suspicious) from any retention: local
//     (blockmap.Repo.PruneWith) and remote (remote.Remote.PruneWith, with
//     the verdicts the remote's manifests carry and the local acks).
package anomaly
