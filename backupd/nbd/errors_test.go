package nbd

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestRetryable(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{&connError{io.ErrUnexpectedEOF}, true},
		{&connError{ErrStalled}, true},
		{fmt.Errorf("wrapped: %w", &ServerError{Errno: EIO, Offset: -1}), true},
		{&ServerError{Errno: ESHUTDOWN, Offset: -1}, true},
		{&ServerError{Errno: EINVAL, Offset: -1}, false},
		{&ServerError{Errno: EPERM, Offset: -1}, false},
		{&OptionError{Option: optGo, Reply: repErrUnknown}, false},
		{fmt.Errorf("dial: %w", x509.UnknownAuthorityError{}), false},
		{protocolErrorf("bad"), false},
		{ErrContextNotNegotiated, false},
		{ErrClosed, false},
		{errors.New("dial unix /x: connection refused"), true},
	}
	for _, c := range cases {
		if got := retryable(c.err); got != c.want {
			t.Errorf("retryable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestErrorMessages(t *testing.T) {
	se := &ServerError{Errno: EIO, Message: "disk on fire", Offset: 4096}
	if got := se.Error(); got != "nbd server error EIO at offset 4096: disk on fire" {
		t.Fatalf("server error text %q", got)
	}
	oe := &OptionError{Option: optGo, Reply: repErrTLSReqd, Message: "use TLS"}
	if !errors.Is(oe, ErrTLSRequired) || !strings.Contains(oe.Error(), "TLS required: use TLS") {
		t.Fatalf("option error %q", oe)
	}
	if printable([]byte("a\x07b\nc")) != "a?b?c" {
		t.Fatalf("printable = %q", printable([]byte("a\x07b\nc")))
	}
}
