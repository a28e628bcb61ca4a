package nbd

import (
	"errors"
	"fmt"
)

// Errno values that NBD servers send in replies.
const (
	EPERM     uint32 = 1
	EIO       uint32 = 5
	ENOMEM    uint32 = 12
	EINVAL    uint32 = 22
	ENOSPC    uint32 = 28
	EOVERFLOW uint32 = 75
	ENOTSUP   uint32 = 95
	ESHUTDOWN uint32 = 108
)

var errnoNames = map[uint32]string{
	EPERM: "EPERM", EIO: "EIO", ENOMEM: "ENOMEM", EINVAL: "EINVAL",
	ENOSPC: "ENOSPC", EOVERFLOW: "EOVERFLOW", ENOTSUP: "ENOTSUP", ESHUTDOWN: "ESHUTDOWN",
}

// Sentinel errors callers can test with errors.Is.
var (
	// ErrStalled means the server made no progress on outstanding requests
	// within Options.StallTimeout.
	ErrStalled = errors.New("nbd: server stalled")
	// ErrClosed means the client was closed.
	ErrClosed = errors.New("nbd: client closed")
	// ErrProtocol means the server violated the protocol.
	ErrProtocol = errors.New("nbd: protocol error")
	// ErrContextNotNegotiated means a block status context was not agreed
	// with the server during the handshake.
	ErrContextNotNegotiated = errors.New("nbd: metadata context not negotiated")
	// ErrTLSRequired means the server requires TLS but the client did not
	// ask for it (use nbds:// or Options.TLS).
	ErrTLSRequired = errors.New("nbd: server requires TLS")
)

// ServerError is an error the server reported for a request.
type ServerError struct {
	Errno   uint32 // errno value from the reply (EIO, EINVAL, ...)
	Message string // optional human-readable message from a structured error
	// Offset is the offset the server named in NBD_REPLY_TYPE_ERROR_OFFSET,
	// or -1 if it named none.
	Offset int64
}

// Error implements error.
func (e *ServerError) Error() string {
	name, ok := errnoNames[e.Errno]
	if !ok {
		name = fmt.Sprintf("errno %d", e.Errno)
	}
	s := "nbd server error " + name
	if e.Offset >= 0 {
		s += fmt.Sprintf(" at offset %d", e.Offset)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// transient reports whether a retry may succeed.
func (e *ServerError) transient() bool {
	switch e.Errno {
	case EIO, ENOMEM, ESHUTDOWN:
		return true
	}
	return false
}

// OptionError is an error reply to a handshake option.
type OptionError struct {
	Option  uint32
	Reply   uint32
	Message string
}

// Error implements error.
func (e *OptionError) Error() string {
	names := map[uint32]string{
		repErrUnsup: "unsupported", repErrPolicy: "forbidden by policy",
		repErrInvalid: "invalid", repErrPlatform: "unsupported on this platform",
		repErrTLSReqd: "TLS required", repErrUnknown: "unknown export",
		repErrShutdown: "server shutting down", repErrBlockSizeReqd: "block size required",
		repErrTooBig: "request too big",
	}
	name, ok := names[e.Reply]
	if !ok {
		name = fmt.Sprintf("error reply %#x", e.Reply)
	}
	s := fmt.Sprintf("nbd option %d: %s", e.Option, name)
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Unwrap maps a TLS-required reply to ErrTLSRequired.
func (e *OptionError) Unwrap() error {
	if e.Reply == repErrTLSReqd {
		return ErrTLSRequired
	}
	return nil
}

// connError marks an error that broke a connection: the request may be
// re-issued on a new connection.
type connError struct{ err error }

func (e *connError) Error() string { return "nbd connection: " + e.err.Error() }
func (e *connError) Unwrap() error { return e.err }

// protocolErrorf builds an error wrapping ErrProtocol.
func protocolErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}
