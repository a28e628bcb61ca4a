package backupd

import (
	"reflect"
	"testing"

	"github.com/cairnbackup/cairn/blockmap"
)

func TestMergeExtents(t *testing.T) {
	e := func(o, n int64) blockmap.Extent { return blockmap.Extent{Offset: o, Length: n} }
	for _, tc := range []struct{ in, want []blockmap.Extent }{
		{nil, []blockmap.Extent{}},
		{[]blockmap.Extent{e(10, 5), e(0, 5)}, []blockmap.Extent{e(0, 5), e(10, 5)}},
		{[]blockmap.Extent{e(0, 5), e(5, 5)}, []blockmap.Extent{e(0, 10)}},
		{[]blockmap.Extent{e(0, 10), e(2, 3), e(8, 4), e(20, 0)}, []blockmap.Extent{e(0, 12)}},
	} {
		if got := mergeExtents(tc.in); !reflect.DeepEqual(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
			t.Errorf("mergeExtents(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
