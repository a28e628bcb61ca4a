package copier

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"
)

// vmFlags returns the VmFlags line of the mapping that holds addr.
func vmFlags(t *testing.T, addr uintptr) string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skip("no /proc/self/smaps:", err)
	}
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		var lo, hi uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x ", &lo, &hi); n == 2 && !strings.Contains(line[:strings.IndexByte(line, ' ')], ":") {
			in = addr >= lo && addr < hi
			continue
		}
		if in && strings.HasPrefix(line, "VmFlags:") {
			return line
		}
	}
	t.Fatalf("no mapping holds %#x", addr)
	return ""
}

func TestChunkBuffer(t *testing.T) {
	for _, tc := range []struct {
		n     int
		align uintptr
		huge  bool
	}{
		{64 << 10, 4096, false},
		{2 << 20, hugePage, true},
		{4 << 20, hugePage, true},
		{3<<20 + 4096, hugePage, true},
	} {
		b, release := chunkBuffer(tc.n)
		addr := uintptr(unsafe.Pointer(&b[0]))
		if len(b) != tc.n || cap(b) != tc.n {
			t.Errorf("chunkBuffer(%d): len %d cap %d", tc.n, len(b), cap(b))
		}
		if addr%tc.align != 0 {
			t.Errorf("chunkBuffer(%d) at %#x: not aligned to %d", tc.n, addr, tc.align)
		}
		if flags := vmFlags(t, addr); tc.huge != strings.Contains(flags, " hg") {
			t.Errorf("chunkBuffer(%d): MADV_HUGEPAGE %v wanted, mapping has %q", tc.n, tc.huge, flags)
		}
		for i := range b { // the whole buffer is writable
			b[i] = byte(i)
		}
		release()
	}
}
