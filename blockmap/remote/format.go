package remote

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/cairnbackup/cairn/blockmap"
)

// blob modes (the first plaintext byte of a blob).
const (
	modeRaw  = 0
	modeZstd = 1
)

// blobRef locates one blob: its pack and byte range.
type blobRef struct {
	Pack ID
	Off  uint32
	Len  uint32
	Raw  uint32 // plaintext block length
}

// packIndex is the decrypted content of cairn/index/<pack>.
type packIndex struct {
	Pack    ID
	Version string // the pack object's version ("" unversioned)
	Entries []indexEntry
}

type indexEntry struct {
	ID            ID
	Off, Len, Raw uint32
}

const indexMagic = "CRNIDX1\n"

func (pi *packIndex) encode() []byte {
	var b bytes.Buffer
	b.WriteString(indexMagic)
	b.Write(pi.Pack[:])
	b.Write(binary.AppendUvarint(nil, uint64(len(pi.Version))))
	b.WriteString(pi.Version)
	b.Write(binary.AppendUvarint(nil, uint64(len(pi.Entries))))
	var tmp [12]byte
	for _, e := range pi.Entries {
		b.Write(e.ID[:])
		binary.LittleEndian.PutUint32(tmp[0:], e.Off)
		binary.LittleEndian.PutUint32(tmp[4:], e.Len)
		binary.LittleEndian.PutUint32(tmp[8:], e.Raw)
		b.Write(tmp[:])
	}
	return b.Bytes()
}

var errShort = errors.New("truncated")

func decodePackIndex(data []byte) (*packIndex, error) {
	if !bytes.HasPrefix(data, []byte(indexMagic)) {
		return nil, fmt.Errorf("%w: pack index without its magic", ErrFormat)
	}
	p := data[len(indexMagic):]
	pi := &packIndex{}
	if len(p) < 32 {
		return nil, errShort
	}
	copy(pi.Pack[:], p)
	p = p[32:]
	vl, n := binary.Uvarint(p)
	if n <= 0 || uint64(len(p)-n) < vl {
		return nil, errShort
	}
	pi.Version = string(p[n : n+int(vl)])
	p = p[n+int(vl):]
	cnt, n := binary.Uvarint(p)
	if n <= 0 || uint64(len(p)-n) != cnt*44 {
		return nil, fmt.Errorf("%w: pack index entries", ErrFormat)
	}
	p = p[n:]
	pi.Entries = make([]indexEntry, cnt)
	for i := range pi.Entries {
		e := &pi.Entries[i]
		copy(e.ID[:], p)
		e.Off = binary.LittleEndian.Uint32(p[32:])
		e.Len = binary.LittleEndian.Uint32(p[36:])
		e.Raw = binary.LittleEndian.Uint32(p[40:])
		p = p[44:]
	}
	return pi, nil
}

// manifest is the decrypted content of cairn/points/<name>.
type manifest struct {
	// Format is manifestFormatInline (each disk's full map inline) or
	// manifestFormatMap (a map object plus a delta per disk).
	Format    int            `json:"format"`
	Point     blockmap.Point `json:"point"`
	BlockSize int            `json:"block_size"`
	// Packs are the packs the point's blocks live in, with the version of
	// each pack object that was written. In format 2 the first Map.Packs
	// of them are the map object's pack table.
	Packs []manifestPack `json:"packs"`
	// Map is the full block map object the disks' deltas apply to
	// (format 2).
	Map   *mapRef        `json:"map,omitempty"`
	Disks []manifestDisk `json:"disks"`
	// Attachments holds the bytes of the point's attachments by name
	// (absent in manifests written before attachments were replicated).
	Attachments map[string][]byte `json:"attachments,omitempty"`
}

type manifestPack struct {
	ID      string `json:"id"`
	Version string `json:"version,omitempty"`
}

type manifestDisk struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
	// Blocks (format 1) is the binary block map (see blockEntry): block
	// number delta, pack number, offset, length, plaintext length, block id.
	Blocks []byte `json:"blocks,omitempty"`
	Count  int    `json:"count,omitempty"`
	// Delta (format 2) is the disk's delta on the map object's map (see
	// encodeDelta): DeltaCount entries.
	Delta      []byte `json:"delta,omitempty"`
	DeltaCount int    `json:"delta_count,omitempty"`
}

// blockEntry is one data block of a disk in a manifest.
// Readers keep one per data block (56 bytes: a 1 TiB disk's data is
// 16 Mi blocks): keep it small.
type blockEntry struct {
	Block int64
	Pack  int32 // index into manifest.Packs (-1 in a delta: removed)
	Off   uint32
	Len   uint32
	Raw   uint32
	ID    ID
}

func encodeBlocks(es []blockEntry) []byte {
	var b []byte
	prev := int64(-1)
	for _, e := range es {
		b = binary.AppendUvarint(b, uint64(e.Block-prev))
		b = binary.AppendUvarint(b, uint64(e.Pack))
		b = binary.AppendUvarint(b, uint64(e.Off))
		b = binary.AppendUvarint(b, uint64(e.Len))
		b = binary.AppendUvarint(b, uint64(e.Raw))
		b = append(b, e.ID[:]...)
		prev = e.Block
	}
	return b
}

// decodeBlocks decodes a full map (a delta of nothing on it).
func decodeBlocks(b []byte, count, npacks int) ([]blockEntry, error) {
	return mergeDelta(b, count, npacks, nil)
}

func (r *Remote) sealManifest(name string, m *manifest) ([]byte, error) {
	js, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	// The fastest level: most of a manifest is random block ids, which
	// no level shrinks, and the default level spent ~6 % of an
	// incremental replication's CPU failing to.
	return seal(r.keys.aead, nil, r.fast.EncodeAll(js, nil), []byte("manifest\x00"+name)), nil
}

func (r *Remote) openManifest(name string, data []byte) (*manifest, error) {
	plain, err := open(r.keys.aead, nil, data, []byte("manifest\x00"+name))
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", name, ErrCorrupt)
	}
	js, err := r.dec.DecodeAll(plain, nil)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w: %v", name, ErrFormat, err)
	}
	var m manifest
	if err := json.Unmarshal(js, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w: %v", name, ErrFormat, err)
	}
	switch m.Format {
	case manifestFormatInline:
	case manifestFormatMap:
		if m.Map == nil || m.Map.Packs < 0 || m.Map.Packs > len(m.Packs) {
			return nil, fmt.Errorf("manifest %s: %w: format 2 without a valid block map reference", name, ErrFormat)
		}
		if _, err := parseID(m.Map.ID); err != nil {
			return nil, fmt.Errorf("manifest %s: %w: block map id %q", name, ErrFormat, m.Map.ID)
		}
	default:
		if m.Format > manifestFormatMap {
			return nil, fmt.Errorf("manifest %s: %w: format %d was written by a newer cairn (this cairn reads 1 and 2): use a cairn at least as new as the one that replicated it", name, ErrFormat, m.Format)
		}
		return nil, fmt.Errorf("manifest %s: %w: format %d (this cairn reads 1 and 2)", name, ErrFormat, m.Format)
	}
	m.normalizeAttachments()
	return &m, nil
}

func (r *Remote) sealIndex(pi *packIndex) []byte {
	return seal(r.keys.aead, nil, pi.encode(), []byte("index\x00"+pi.Pack.String()))
}

func (r *Remote) openIndex(pack ID, data []byte) (*packIndex, error) {
	plain, err := open(r.keys.aead, nil, data, []byte("index\x00"+pack.String()))
	if err != nil {
		return nil, fmt.Errorf("index of pack %s: %w", pack, ErrCorrupt)
	}
	pi, err := decodePackIndex(plain)
	if err != nil {
		return nil, fmt.Errorf("index of pack %s: %w", pack, err)
	}
	if pi.Pack != pack {
		return nil, fmt.Errorf("index of pack %s: %w: names pack %s", pack, ErrCorrupt, pi.Pack)
	}
	return pi, nil
}

// sealBlob compresses (when that helps) and encrypts one block, appending
// the blob to dst. The fastest zstd level tells incompressible blocks
// (random, encrypted, already compressed: most of what is not zeros on
// many disks) at several GB/s, where the default level takes ten times
// longer to fail; only blocks it shrinks are compressed at the default
// level.
func (r *Remote) sealBlob(dst []byte, id ID, data []byte) []byte {
	bp := plainPool.Get().(*[]byte)
	defer plainPool.Put(bp)
	plain := r.fast.EncodeAll(data, (*bp)[:1])
	if len(plain) < len(data)*15/16 {
		plain = r.enc.EncodeAll(data, plain[:1])
	}
	if len(plain) < len(data)*15/16 {
		plain[0] = modeZstd
	} else {
		plain = append(plain[:1], data...)
		plain[0] = modeRaw
	}
	*bp = plain[:0]
	return seal(r.keys.aead, dst, plain, id[:])
}

// plainPool holds the buffers blobs are compressed into before sealing.
var plainPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10+64); return &b }}

// openBlob authenticates, decrypts and decompresses one blob, and checks
// that the block's MAC is its id. The blob is decrypted into *scratch
// (grown when too small; the caller keeps it for its next blob), so only
// the block itself is a new buffer, of exactly the block's size: the
// caller may keep it (a reader's cache does), and a 64 KiB block takes
// 16 pages, not the 17 that the mode byte in front of it would.
func (r *Remote) openBlob(id ID, sealed []byte, raw uint32, scratch *[]byte) ([]byte, error) {
	plain, err := open(r.keys.aead, (*scratch)[:0], sealed, id[:])
	if err != nil || len(plain) == 0 {
		return nil, ErrCorrupt
	}
	if cap(plain) > cap(*scratch) {
		*scratch = plain[:0] // grown: keep the larger one
	}
	var data []byte
	switch plain[0] {
	case modeRaw:
		body := plain[1:]
		if uint32(len(body)) != raw || r.keys.blockID(body) != id {
			return nil, ErrCorrupt
		}
		// Checked in the scratch buffer, which nothing else writes: the
		// copy is the bytes authenticated.
		data = newBlock(int(raw))
		copy(data, body)
		return data, nil
	case modeZstd:
		if data, err = r.dec.DecodeAll(plain[1:], newBlock(int(raw))[:0]); err != nil {
			return nil, ErrCorrupt
		}
	default:
		return nil, ErrCorrupt
	}
	if uint32(len(data)) != raw || r.keys.blockID(data) != id {
		return nil, ErrCorrupt
	}
	return data, nil
}
