package partinfo

import "testing"

func TestFormatLVMUUID(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"abcdefGHIJklmnOPQRstuvWXYZ012345", "abcdef-GHIJ-klmn-OPQR-stuv-WXYZ-012345"},
		{"short", "short"},
		{"", ""},
	} {
		if got := FormatLVMUUID(tc.in); got != tc.want {
			t.Errorf("FormatLVMUUID(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
