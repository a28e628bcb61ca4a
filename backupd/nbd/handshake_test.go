package nbd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
)

func TestHandshakeVariants(t *testing.T) {
	path := sparseImage(t, 4<<20, span{0, 64 << 10}, span{2 << 20, 4096})
	want := fileSHA(t, path)
	cases := []struct {
		name       string
		args       []string
		export     string
		handshake  string
		structured bool
	}{
		{"fixed newstyle", nil, "foo", "fixed newstyle", true},
		{"fixed without NO_ZEROES", []string{"--mask-handshake=1"}, "foo", "fixed newstyle", true},
		{"plain newstyle", []string{"--mask-handshake=0"}, "foo", "newstyle", false},
		{"plain newstyle with NO_ZEROES", []string{"--mask-handshake=2"}, "foo", "newstyle", false},
		{"oldstyle", []string{"--oldstyle"}, "", "oldstyle", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{}, tc.args...), "--filter=exportname", "file", path)
			if tc.export != "" {
				args = append(args, "exportname=foo", "exportname-strict=true")
			}
			srv := nbdkit(t, args...)
			c := dialT(t, srv.uri(tc.export), testOptions())
			info := c.Info()
			if info.Handshake != tc.handshake || info.StructuredReplies != tc.structured {
				t.Fatalf("handshake %q structured %v, want %q %v", info.Handshake, info.StructuredReplies, tc.handshake, tc.structured)
			}
			if info.Size != 4<<20 || info.Flags&FlagHasFlags == 0 {
				t.Fatalf("size %d flags %#x", info.Size, info.Flags)
			}
			if got := sha256.Sum256(readAll(t, c)); got != want {
				t.Fatal("export content differs from the file")
			}
			if tc.export == "" {
				return
			}
			_, err := Dial(context.Background(), srv.uri("bar"), testOptions())
			if err == nil || !strings.Contains(err.Error(), "bar") {
				t.Fatalf("dial of unknown export: %v, want an error naming it", err)
			}
			var oe *OptionError
			if tc.handshake == "fixed newstyle" && !errors.As(err, &oe) {
				t.Fatalf("unknown export over fixed newstyle: %v, want an OptionError", err)
			}
		})
	}
}

func TestProbeAndFlags(t *testing.T) {
	srv := nbdkit(t, "--read-only", "memory", "size=5M")
	info, err := Probe(context.Background(), srv.uri(""), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != 5<<20 || info.Flags&FlagReadOnly == 0 || info.Flags&FlagCanMultiConn == 0 {
		t.Fatalf("probe: size %d flags %#x, want 5M, read-only, multi-conn", info.Size, info.Flags)
	}
	// nbdkit -r on the memory plugin also still answers reads.
	c := dialT(t, srv.uri(""), testOptions())
	if !c.ReadOnly() || !c.CanMultiConn() {
		t.Fatalf("flags %#x", c.Flags())
	}
	rw := nbdkit(t, "memory", "size=5M")
	c2 := dialT(t, rw.uri(""), testOptions())
	if c2.ReadOnly() || c2.Flags()&FlagSendFlush == 0 {
		t.Fatalf("writable memory export flags %#x", c2.Flags())
	}
}

func TestBlockSizeConstraints(t *testing.T) {
	// The export size is a multiple of the minimum block size, as the
	// specification asks of servers.
	path := sparseImage(t, 24<<20+4096, testSpans...)
	srv := nbdkit(t, "--filter=blocksize-policy", "file", path,
		"blocksize-minimum=4096", "blocksize-preferred=65536", "blocksize-maximum=262144",
		"blocksize-error-policy=error")
	c := dialT(t, srv.uri(""), testOptions())
	if bs := c.BlockSize(); bs != (BlockSize{4096, 65536, 262144}) {
		t.Fatalf("block size %+v", bs)
	}
	if c.MaxRequest() != 262144 {
		t.Fatalf("max request %d, want the server's maximum 262144", c.MaxRequest())
	}
	// The policy filter fails requests that break the constraints, so
	// these reads prove that the client splits and aligns.
	all := readAll(t, c)
	if sha256.Sum256(all) != fileSHA(t, path) {
		t.Fatal("export content differs from the file")
	}
	for _, r := range []span{{3<<20 + 123, 100000}, {5, 10}, {4090, 10}, {4096, 1 << 20}, {8191, 4097},
		{1 << 20, 2<<20 + 1}, {int64(len(all)) - 5000, 5000}, {123, 3 << 20}} {
		buf := make([]byte, r.len)
		if _, err := c.ReadAt(context.Background(), buf, r.off); err != nil {
			t.Fatalf("read %+v: %v", r, err)
		}
		if !bytes.Equal(buf, all[r.off:r.off+r.len]) {
			t.Fatalf("unaligned read %+v differs", r)
		}
	}
	if ext, err := c.AllocatedExtents(context.Background()); err != nil || len(ext) == 0 {
		t.Fatalf("allocated extents under block size constraints: %v %v", ext, err)
	}
}
