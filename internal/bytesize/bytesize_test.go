package bytesize

import (
	"math"
	"testing"
)

func TestIEC(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{1536, "1.5 KiB"},
		{3 << 30, "3.0 GiB"},
		{math.MaxInt64, "8.0 EiB"},
	} {
		if got := IEC(tc.n); got != tc.want {
			t.Errorf("IEC(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}
