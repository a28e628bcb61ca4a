// Package bytesize writes byte counts the way cairn's output shows them
// and reads the sizes its flags take.
//
// Vocabulary:
//   - IEC form: a count in powers of 1024 with one decimal and its binary
//     prefix ("1.5 GiB"); counts under 1 KiB are plain bytes ("512 B").
//   - size: what a size flag takes (Parse): bytes with an optional
//     1024-based suffix, k, M, G, T or KiB, MiB, GiB, TiB ("64k", "2GiB");
//     the short form (Short) is the one with the largest whole suffix.
package bytesize

import "fmt"

// IEC returns n in IEC form: "512 B", "1.5 KiB", "3.0 GiB".
func IEC(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
