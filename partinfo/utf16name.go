package partinfo

import (
	"unicode/utf16"
	"unicode/utf8"
)

// DecodeUTF16Name turns a file name stored as UTF-16 code units (NTFS,
// FAT long names, exFAT) into the byte string a Linux directory lists.
//
// The units are always little-endian code units already; nothing is
// sniffed, so a leading U+FEFF is an ordinary character of the name (it
// is kept as the 3 bytes EF BB BF). Valid surrogate pairs become one
// UTF-8 sequence. An unpaired surrogate (Windows allows any 16-bit unit
// in a name) is written in its generalized UTF-8 form, the 3 bytes
// ED A0 80 ... ED BF BF that WTF-8 uses: names that differ only in
// unpaired surrogates stay distinct, and the mapping is reversible
// (EncodeUTF16Name gives the units back). Decoding stops at a NUL unit.
func DecodeUTF16Name(u []uint16) string {
	b := make([]byte, 0, len(u)*3/2+4)
	for i := 0; i < len(u); i++ {
		c := rune(u[i])
		switch {
		case c == 0:
			return string(b)
		case utf16.IsSurrogate(c) && c < 0xDC00 && i+1 < len(u) && u[i+1] >= 0xDC00 && u[i+1] <= 0xDFFF:
			b = utf8.AppendRune(b, utf16.DecodeRune(c, rune(u[i+1])))
			i++
		case utf16.IsSurrogate(c):
			b = append(b, 0xE0|byte(c>>12), 0x80|byte(c>>6)&0x3F, 0x80|byte(c)&0x3F)
		default:
			b = utf8.AppendRune(b, c)
		}
	}
	return string(b)
}

// EncodeUTF16Name is the inverse of DecodeUTF16Name: UTF-8 becomes code
// units, and a 3-byte generalized UTF-8 surrogate becomes that one unit.
// Bytes that are neither (never produced by DecodeUTF16Name) become
// U+FFFD.
func EncodeUTF16Name(s string) []uint16 {
	var u []uint16
	for i := 0; i < len(s); {
		if i+2 < len(s) && s[i] == 0xED && s[i+1] >= 0xA0 && s[i+1] <= 0xBF && s[i+2]&0xC0 == 0x80 {
			u = append(u, uint16(0xD000|uint16(s[i+1]&0x3F)<<6|uint16(s[i+2]&0x3F)))
			i += 3
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		u = utf16.AppendRune(u, r)
		i += n
	}
	return u
}
