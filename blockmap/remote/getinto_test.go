package remote

import (
	"bytes"
	"errors"
	"testing"
)

// TestGetIntoRanges reads ranges of a real object into a reused buffer:
// the bytes asked for, a buffer too small replaced, and a range past the
// object's end reported as damage (an index that promises more than the
// pack holds), never as short data.
func TestGetIntoRanges(t *testing.T) {
	e := newEnv(t, 0)
	r := e.open()
	obj := bytes.Repeat([]byte("0123456789abcdef"), 64) // 1 KiB
	if _, err := r.st.put(ctx(t), packPrefix+"getinto", obj, putOptions{}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	for _, tc := range []struct {
		name        string
		off, length int64
		buf         []byte
	}{
		{"inside, into the buffer", 100, 300, buf},
		{"larger than the buffer", 0, 1024, buf},
		{"no buffer", 1000, 24, nil},
	} {
		got, err := r.st.getInto(ctx(t), packPrefix+"getinto", "", tc.off, tc.length, tc.buf)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !bytes.Equal(got, obj[tc.off:tc.off+tc.length]) {
			t.Errorf("%s: wrong bytes", tc.name)
		}
		if tc.buf != nil && int64(cap(tc.buf)) >= tc.length && &got[0] != &tc.buf[0] {
			t.Errorf("%s: the buffer given was not used", tc.name)
		}
	}
	if _, err := r.st.getInto(ctx(t), packPrefix+"getinto", "", 1000, 100, buf); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a range past the object's end: %v, want ErrCorrupt", err)
	}
}
