package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// BlockSize holds the server's block size constraints in bytes.
type BlockSize struct {
	Min       uint32 // requests should be aligned to this (1 if unconstrained)
	Preferred uint32 // efficient request size
	Max       uint32 // largest payload the server accepts
}

// ExportInfo describes a negotiated export.
type ExportInfo struct {
	Name      string
	Size      int64
	Flags     uint16 // transmission flags (FlagReadOnly, FlagCanMultiConn, ...)
	BlockSize BlockSize
	// StructuredReplies reports whether NBD_OPT_STRUCTURED_REPLY was agreed.
	StructuredReplies bool
	// MetaContexts maps each agreed metadata context name to its server id.
	MetaContexts map[string]uint32
	// Handshake is "fixed newstyle", "newstyle" or "oldstyle".
	Handshake string
	// TLS reports whether the connection was upgraded with NBD_OPT_STARTTLS.
	TLS bool
}

// handshakeConfig says what the client asks for during the handshake.
type handshakeConfig struct {
	export     string
	structured bool
	contexts   []string
	// startTLS, when set, upgrades the stream after NBD_OPT_STARTTLS was
	// acknowledged and returns the encrypted stream.
	startTLS func() (io.ReadWriter, error)
	// probe uses NBD_OPT_INFO and ends with NBD_OPT_ABORT instead of
	// entering transmission.
	probe bool
}

// negotiate runs the client side of the handshake on rw. It returns the
// stream to use for transmission (the TLS stream after STARTTLS) and the
// export's description.
func negotiate(rw io.ReadWriter, cfg handshakeConfig) (io.ReadWriter, ExportInfo, error) {
	info := ExportInfo{BlockSize: BlockSize{Min: 1, Preferred: 4096, Max: defaultMaxBlock}}
	var hdr [18]byte
	if _, err := io.ReadFull(rw, hdr[:16]); err != nil {
		return nil, info, fmt.Errorf("read server greeting: %w", err)
	}
	if m := binary.BigEndian.Uint64(hdr[0:8]); m != magicNBD {
		return nil, info, protocolErrorf("bad greeting magic %#x", m)
	}
	switch m := binary.BigEndian.Uint64(hdr[8:16]); m {
	case magicOldstyle:
		if cfg.startTLS != nil {
			return nil, info, fmt.Errorf("oldstyle server cannot do TLS: %w", ErrTLSRequired)
		}
		return rw, info, readOldstyle(rw, &info)
	case magicOption:
	default:
		return nil, info, protocolErrorf("bad greeting second magic %#x", m)
	}
	if _, err := io.ReadFull(rw, hdr[16:18]); err != nil {
		return nil, info, fmt.Errorf("read handshake flags: %w", err)
	}
	serverFlags := binary.BigEndian.Uint16(hdr[16:18])
	fixed := serverFlags&flagFixedNewstyle != 0
	noZeroes := serverFlags&flagNoZeroes != 0
	var clientFlags uint32
	if fixed {
		clientFlags |= clientFlagFixedNewstyle
	}
	if noZeroes {
		clientFlags |= clientFlagNoZeroes
	}
	if err := binary.Write(rw, binary.BigEndian, clientFlags); err != nil {
		return nil, info, fmt.Errorf("send client flags: %w", err)
	}
	info.Handshake = "newstyle"
	if !fixed {
		if cfg.startTLS != nil {
			return nil, info, fmt.Errorf("server does not speak fixed newstyle, cannot do TLS: %w", ErrTLSRequired)
		}
		info.Name = cfg.export
		return rw, info, exportName(rw, cfg.export, noZeroes, &info)
	}
	info.Handshake = "fixed newstyle"
	if cfg.startTLS != nil {
		if err := simpleOption(rw, optStartTLS, nil); err != nil {
			return nil, info, fmt.Errorf("starttls: %w", err)
		}
		s, err := cfg.startTLS()
		if err != nil {
			return nil, info, fmt.Errorf("tls handshake: %w", err)
		}
		rw = s
		info.TLS = true
	}
	if cfg.structured {
		err := simpleOption(rw, optStructuredRepl, nil)
		var oe *OptionError
		switch {
		case err == nil:
			info.StructuredReplies = true
		case errors.As(err, &oe) && oe.Reply != repErrTLSReqd:
			// The server does not do structured replies: use simple ones.
		default:
			return nil, info, fmt.Errorf("structured replies: %w", err)
		}
	}
	if info.StructuredReplies && len(cfg.contexts) > 0 {
		ids, err := setMetaContext(rw, cfg.export, cfg.contexts)
		var oe *OptionError
		if err != nil && !errors.As(err, &oe) {
			return nil, info, fmt.Errorf("set meta context: %w", err)
		}
		info.MetaContexts = ids
	}
	opt := optGo
	if cfg.probe {
		opt = optInfo
	}
	err := goOption(rw, opt, cfg.export, &info)
	var oe *OptionError
	if errors.As(err, &oe) && oe.Reply == repErrUnsup && !cfg.probe {
		// A server without NBD_OPT_GO: fall back to NBD_OPT_EXPORT_NAME.
		info.MetaContexts = nil
		return rw, info, exportName(rw, cfg.export, noZeroes, &info)
	}
	if err != nil {
		return nil, info, fmt.Errorf("export %q: %w", cfg.export, err)
	}
	if cfg.probe {
		_ = writeOption(rw, optAbort, nil)
	}
	return rw, info, nil
}

// readOldstyle reads the rest of an oldstyle greeting.
func readOldstyle(r io.Reader, info *ExportInfo) error {
	var b [8 + 4 + 124]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return fmt.Errorf("read oldstyle greeting: %w", err)
	}
	size := binary.BigEndian.Uint64(b[0:8])
	if size > 1<<62 {
		return protocolErrorf("export size %d too large", size)
	}
	info.Size = int64(size)
	info.Flags = uint16(binary.BigEndian.Uint32(b[8:12]))
	info.Handshake = "oldstyle"
	return nil
}

// exportName sends NBD_OPT_EXPORT_NAME and reads the export description.
func exportName(rw io.ReadWriter, export string, noZeroes bool, info *ExportInfo) error {
	if err := writeOption(rw, optExportName, []byte(export)); err != nil {
		return fmt.Errorf("send export name: %w", err)
	}
	n := 10
	if !noZeroes {
		n += 124
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(rw, b); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("server closed the connection after NBD_OPT_EXPORT_NAME: export %q is probably unknown", export)
		}
		return fmt.Errorf("read export %q: %w", export, err)
	}
	size := binary.BigEndian.Uint64(b[0:8])
	if size > 1<<62 {
		return protocolErrorf("export size %d too large", size)
	}
	info.Name = export
	info.Size = int64(size)
	info.Flags = binary.BigEndian.Uint16(b[8:10])
	return nil
}

// writeOption sends one option request.
func writeOption(w io.Writer, opt uint32, data []byte) error {
	b := make([]byte, 16, 16+len(data))
	binary.BigEndian.PutUint64(b[0:8], magicOption)
	binary.BigEndian.PutUint32(b[8:12], opt)
	binary.BigEndian.PutUint32(b[12:16], uint32(len(data)))
	_, err := w.Write(append(b, data...))
	return err
}

// readOptionReply reads one option reply to opt.
func readOptionReply(r io.Reader, opt uint32) (uint32, []byte, error) {
	var h [20]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, fmt.Errorf("read option reply: %w", err)
	}
	if m := binary.BigEndian.Uint64(h[0:8]); m != magicOptReply {
		return 0, nil, protocolErrorf("bad option reply magic %#x", m)
	}
	if o := binary.BigEndian.Uint32(h[8:12]); o != opt {
		return 0, nil, protocolErrorf("reply to option %d while waiting for option %d", o, opt)
	}
	typ := binary.BigEndian.Uint32(h[12:16])
	n := binary.BigEndian.Uint32(h[16:20])
	if n > maxOptionReply {
		return 0, nil, protocolErrorf("option reply of %d bytes is too large", n)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		return 0, nil, fmt.Errorf("read option reply payload: %w", err)
	}
	return typ, data, nil
}

// optionError turns an error reply into an *OptionError, or reports a
// protocol error for a reply type that the option does not allow.
func optionError(opt, typ uint32, data []byte) error {
	if typ&repFlagError != 0 {
		return &OptionError{Option: opt, Reply: typ, Message: printable(data)}
	}
	return protocolErrorf("unexpected reply type %d to option %d", typ, opt)
}

// simpleOption sends an option whose only success reply is NBD_REP_ACK.
func simpleOption(rw io.ReadWriter, opt uint32, data []byte) error {
	if err := writeOption(rw, opt, data); err != nil {
		return fmt.Errorf("send option %d: %w", opt, err)
	}
	typ, payload, err := readOptionReply(rw, opt)
	if err != nil {
		return err
	}
	if typ != repAck {
		return optionError(opt, typ, payload)
	}
	return nil
}

// setMetaContext asks for the given metadata contexts and returns the ones
// the server agreed to, by name.
func setMetaContext(rw io.ReadWriter, export string, contexts []string) (map[string]uint32, error) {
	data := binary.BigEndian.AppendUint32(nil, uint32(len(export)))
	data = append(data, export...)
	data = binary.BigEndian.AppendUint32(data, uint32(len(contexts)))
	for _, c := range contexts {
		data = binary.BigEndian.AppendUint32(data, uint32(len(c)))
		data = append(data, c...)
	}
	if err := writeOption(rw, optSetMetaContext, data); err != nil {
		return nil, fmt.Errorf("send set meta context: %w", err)
	}
	ids := map[string]uint32{}
	for {
		typ, payload, err := readOptionReply(rw, optSetMetaContext)
		if err != nil {
			return nil, err
		}
		switch typ {
		case repAck:
			return ids, nil
		case repMetaContext:
			if len(payload) < 4 {
				return nil, protocolErrorf("meta context reply of %d bytes", len(payload))
			}
			name := string(payload[4:])
			if _, dup := ids[name]; dup || !slices.Contains(contexts, name) {
				return nil, protocolErrorf("meta context reply for %q, which was not asked for or was given twice", printable(payload[4:]))
			}
			ids[name] = binary.BigEndian.Uint32(payload[0:4])
		default:
			return nil, optionError(optSetMetaContext, typ, payload)
		}
	}
}

// goOption sends NBD_OPT_GO or NBD_OPT_INFO and reads the export info.
func goOption(rw io.ReadWriter, opt uint32, export string, info *ExportInfo) error {
	data := binary.BigEndian.AppendUint32(nil, uint32(len(export)))
	data = append(data, export...)
	data = binary.BigEndian.AppendUint16(data, 1)
	data = binary.BigEndian.AppendUint16(data, infoBlockSize)
	if err := writeOption(rw, opt, data); err != nil {
		return fmt.Errorf("send option %d: %w", opt, err)
	}
	haveExport := false
	for replies := 0; ; replies++ {
		if replies > maxInfoReplies {
			return protocolErrorf("more than %d info replies to option %d", maxInfoReplies, opt)
		}
		typ, payload, err := readOptionReply(rw, opt)
		if err != nil {
			return err
		}
		switch typ {
		case repAck:
			if !haveExport {
				return protocolErrorf("server acknowledged option %d without NBD_INFO_EXPORT", opt)
			}
			info.Name = export
			return nil
		case repInfo:
			got, err := parseInfo(payload, info)
			if err != nil {
				return err
			}
			haveExport = haveExport || got
		default:
			return optionError(opt, typ, payload)
		}
	}
}

// maxInfoReplies bounds the NBD_REP_INFO replies to one NBD_OPT_GO.
const maxInfoReplies = 64

// parseInfo applies one NBD_REP_INFO payload to info. It reports whether
// the payload was NBD_INFO_EXPORT.
func parseInfo(p []byte, info *ExportInfo) (bool, error) {
	if len(p) < 2 {
		return false, protocolErrorf("info reply of %d bytes", len(p))
	}
	switch binary.BigEndian.Uint16(p[0:2]) {
	case infoExport:
		if len(p) != 12 {
			return false, protocolErrorf("NBD_INFO_EXPORT of %d bytes", len(p))
		}
		size := binary.BigEndian.Uint64(p[2:10])
		if size > 1<<62 {
			return false, protocolErrorf("export size %d too large", size)
		}
		info.Size = int64(size)
		info.Flags = binary.BigEndian.Uint16(p[10:12])
		return true, nil
	case infoBlockSize:
		if len(p) != 14 {
			return false, protocolErrorf("NBD_INFO_BLOCK_SIZE of %d bytes", len(p))
		}
		bs := BlockSize{
			Min:       binary.BigEndian.Uint32(p[2:6]),
			Preferred: binary.BigEndian.Uint32(p[6:10]),
			Max:       binary.BigEndian.Uint32(p[10:14]),
		}
		if !powerOfTwo(bs.Min) || bs.Min > 64<<10 || !powerOfTwo(bs.Preferred) || bs.Preferred < bs.Min ||
			bs.Max < bs.Min || (bs.Max != 0xffffffff && bs.Max%bs.Min != 0) {
			return false, protocolErrorf("invalid block sizes min=%d preferred=%d max=%d", bs.Min, bs.Preferred, bs.Max)
		}
		info.BlockSize = bs
	}
	return false, nil // other info types are ignored
}

func powerOfTwo(v uint32) bool { return v != 0 && v&(v-1) == 0 }

// printable returns a server message with control characters replaced.
func printable(b []byte) string {
	r := []rune(string(b))
	for i, c := range r {
		if c < 0x20 && c != '\t' || c == 0x7f {
			r[i] = '?'
		}
	}
	return string(r)
}
