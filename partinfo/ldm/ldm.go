package ldm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/cairnbackup/cairn/partinfo"
)

// Errors.
var (
	ErrCorrupt     = errors.New("LDM database is corrupt")
	ErrUnsupported = errors.New("LDM volume type not supported")
	ErrMissing     = errors.New("LDM disk missing")
)

const (
	sector     = 512
	offPriv1   = 6
	offTOC1    = 1
	offTOC2    = 2
	offVMDB    = 17
	maxVBLKs   = 1 << 14
	typeComp   = 0x32
	typePart   = 0x33
	typeDisk3  = 0x34
	typeDisk4  = 0x44
	typeVolume = 0x51
	flagStripe = 0x10 // component has stripe size and columns
	flagIndex  = 0x08 // partition has an index
	compStripe = 1
	compSpan   = 2
	compRAID5  = 3
)

func corrupt(format string, a ...any) error {
	return fmt.Errorf("ldm: "+format+": %w", append(a, ErrCorrupt)...)
}

// Disk is one dynamic disk found: its GUID and where its data area lies.
type Disk struct {
	Region partinfo.Region
	GUID   string
	Start  int64 // bytes: the data area (partition starts are relative to it)
	Size   int64
	// DB is the raw database of this disk (config_start .. +size).
	configStart, configSize int64
}

// Volume is one dynamic volume.
type Volume struct {
	Name     string
	Size     int64
	Type     string // simple, spanned, striped, mirrored, raid5
	Problems []string
	plexes   []*plex
}

type plex struct {
	typ     int
	stripe  int64 // bytes
	columns int
	parts   []*part
}

type part struct {
	name      string
	start     int64 // bytes within the disk's data area
	volOffset int64 // bytes within the component
	size      int64
	index     int
	diskObj   uint64
	disk      *Disk // nil when missing
	diskName  string
	diskGUID  string
}

// Set is the result of a scan.
type Set struct {
	Disks    []*Disk
	Volumes  []*Volume
	Problems []string
}

// Scan reads the LDM database of the dynamic disks among regions (whole
// disks with an MBR partition of type 0x42) and assembles the volumes.
func Scan(ctx context.Context, disks []partinfo.Region) (*Set, error) {
	set := &Set{}
	var db []byte
	var dbDisk *Disk
	for _, r := range disks {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		d, raw, err := readDisk(r)
		if err != nil {
			set.Problems = append(set.Problems, err.Error())
			continue
		}
		if d == nil {
			continue
		}
		set.Disks = append(set.Disks, d)
		if db == nil {
			db, dbDisk = raw, d
		}
	}
	if db == nil {
		return set, nil
	}
	vols, problems, err := parseDB(db, set.Disks)
	if err != nil {
		set.Problems = append(set.Problems, fmt.Sprintf("%s: %v", dbDisk.Region.Name, err))
		return set, nil
	}
	set.Volumes = vols
	set.Problems = append(set.Problems, problems...)
	return set, nil
}

// readDisk reads the PRIVHEAD and the database of a dynamic disk; nil
// when the disk is not one.
func readDisk(r partinfo.Region) (*Disk, []byte, error) {
	mbr := make([]byte, sector)
	if partinfo.ReadFull(r, mbr, 0) != nil || mbr[510] != 0x55 || mbr[511] != 0xAA {
		return nil, nil, nil
	}
	privAt := int64(-1)
	for i := 0; i < 4; i++ {
		if mbr[446+16*i+4] == 0x42 {
			privAt = offPriv1 * sector
		}
	}
	if privAt < 0 && mbr[446+4] == 0xEE {
		// GPT: the PRIVHEAD is the last sector of the LDM metadata partition.
		t, err := partinfo.ReadTable(r, r.Size)
		if err != nil {
			return nil, nil, nil
		}
		for _, p := range t.Partitions {
			if p.Type == partinfo.GUIDLDMMetadata && p.Size >= sector {
				privAt = p.Start + p.Size - sector
			}
		}
	}
	if privAt < 0 {
		return nil, nil, nil
	}
	ph := make([]byte, sector)
	if err := partinfo.ReadFull(r, ph, privAt); err != nil {
		return nil, nil, fmt.Errorf("%s: read PRIVHEAD: %w", r.Name, err)
	}
	if string(ph[:8]) != "PRIVHEAD" {
		return nil, nil, corrupt("%s: dynamic disk without a PRIVHEAD", r.Name)
	}
	be := binary.BigEndian
	if maj, min := be.Uint16(ph[0x0C:]), be.Uint16(ph[0x0E:]); maj != 2 || (min != 11 && min != 12) {
		return nil, nil, fmt.Errorf("ldm: %s: PRIVHEAD version %d.%d: %w", r.Name, maj, min, ErrUnsupported)
	}
	d := &Disk{Region: r, GUID: strings.ToLower(cString(ph[0x30:0x70])),
		Start: int64(be.Uint64(ph[0x11B:])) * sector, Size: int64(be.Uint64(ph[0x123:])) * sector,
		configStart: int64(be.Uint64(ph[0x12B:])) * sector, configSize: int64(be.Uint64(ph[0x133:])) * sector}
	if d.Size <= 0 || d.Start < 0 || d.Start+d.Size > d.configStart || d.configSize < 32*sector ||
		d.configSize > 64<<20 || d.configStart+d.configSize > r.Size {
		return nil, nil, corrupt("%s: PRIVHEAD areas (data %d+%d, database %d+%d) do not fit the %d-byte disk", r.Name, d.Start, d.Size, d.configStart, d.configSize, r.Size)
	}
	raw := make([]byte, d.configSize)
	if err := partinfo.ReadFull(r, raw, d.configStart); err != nil {
		return nil, nil, fmt.Errorf("%s: read LDM database: %w", r.Name, err)
	}
	return d, raw, nil
}

// vnum reads a length-prefixed big-endian number at b[*o].
func vnum(b []byte, o *int) (uint64, error) {
	if *o >= len(b) {
		return 0, corrupt("number past the record")
	}
	n := int(b[*o])
	if n == 0 || n > 8 || *o+1+n > len(b) {
		return 0, corrupt("number of %d bytes", n)
	}
	var v uint64
	for _, c := range b[*o+1 : *o+1+n] {
		v = v<<8 | uint64(c)
	}
	*o += 1 + n
	return v, nil
}

// vstr reads a length-prefixed string at b[*o].
func vstr(b []byte, o *int) (string, error) {
	if *o >= len(b) {
		return "", corrupt("string past the record")
	}
	n := int(b[*o])
	if *o+1+n > len(b) {
		return "", corrupt("string of %d bytes past the record", n)
	}
	s := string(b[*o+1 : *o+1+n])
	*o += 1 + n
	return s, nil
}

func skip(b []byte, o *int, n int) error {
	if *o+n > len(b) {
		return corrupt("record too short")
	}
	*o += n
	return nil
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// records reassembles the VBLK records of the database.
func records(db []byte) ([][]byte, error) {
	be := binary.BigEndian
	toc := db[offTOC1*sector:]
	if string(toc[:8]) != "TOCBLOCK" {
		toc = db[offTOC2*sector:]
		if string(toc[:8]) != "TOCBLOCK" {
			return nil, corrupt("no TOCBLOCK")
		}
	}
	if int64(offVMDB*sector+sector) > int64(len(db)) {
		return nil, corrupt("database too small")
	}
	vm := db[offVMDB*sector:]
	if string(vm[:4]) != "VMDB" {
		return nil, corrupt("no VMDB")
	}
	if maj, min := be.Uint16(vm[0x12:]), be.Uint16(vm[0x14:]); maj != 4 || min != 10 {
		return nil, fmt.Errorf("ldm: VMDB version %d.%d: %w", maj, min, ErrUnsupported)
	}
	size := int(be.Uint32(vm[0x08:]))
	first := int(be.Uint32(vm[0x0C:]))
	last := int(be.Uint32(vm[0x04:]))
	if size < 32 || size > 4096 || first < size || last > maxVBLKs || offVMDB*sector+last*size > len(db) {
		return nil, corrupt("VMDB: %d VBLKs of %d bytes from %d", last, size, first)
	}
	type frag struct {
		num   int
		parts [][]byte
	}
	frags := map[uint32]*frag{}
	var order []uint32
	var out [][]byte
	for off := offVMDB*sector + first; off+size <= offVMDB*sector+last*size; off += size {
		v := db[off : off+size]
		if string(v[:4]) != "VBLK" {
			return nil, corrupt("no VBLK at database offset %d", off)
		}
		rec, num := int(be.Uint16(v[0x0C:])), int(be.Uint16(v[0x0E:]))
		switch {
		case num == 0:
			continue // unused
		case num == 1:
			out = append(out, v)
		default:
			if num > 4 || rec >= num {
				return nil, corrupt("VBLK fragment %d of %d", rec, num)
			}
			g := be.Uint32(v[0x08:])
			f := frags[g]
			if f == nil {
				f = &frag{num: num, parts: make([][]byte, num)}
				frags[g] = f
				order = append(order, g)
			}
			if f.parts[rec] != nil || f.num != num {
				return nil, corrupt("VBLK group %d: fragment %d twice", g, rec)
			}
			f.parts[rec] = v
		}
	}
	for _, g := range order {
		f := frags[g]
		whole := append([]byte(nil), f.parts[0]...)
		for i, p := range f.parts {
			if p == nil {
				return nil, corrupt("VBLK group %d misses fragment %d", g, i)
			}
			if i > 0 {
				whole = append(whole, p[16:]...)
			}
		}
		out = append(out, whole)
	}
	return out, nil
}

type volRec struct {
	id       uint64
	name     string
	vtype    string
	children uint64
	size     int64
}

type compRec struct {
	id, parent uint64
	name       string
	typ        int
	stripe     int64
	columns    int
}

type diskRec struct {
	id   uint64
	name string
	guid string
}

// parseDB parses the records and builds the volumes.
func parseDB(db []byte, disks []*Disk) ([]*Volume, []string, error) {
	recs, err := records(db)
	if err != nil {
		return nil, nil, err
	}
	var vols []volRec
	comps := map[uint64]*compRec{}
	diskByID := map[uint64]diskRec{}
	var parts []struct {
		p      part
		parent uint64
	}
	be := binary.BigEndian
	for _, r := range recs {
		if len(r) < 0x18 {
			return nil, nil, corrupt("short record")
		}
		flags, typ := r[0x12], r[0x13]
		end := 0x18 + int(be.Uint32(r[0x14:]))
		if end > len(r) {
			return nil, nil, corrupt("record of type %#x claims %d bytes", typ, end)
		}
		b := r[:end]
		o := 0x18
		id, err := vnum(b, &o)
		if err != nil {
			return nil, nil, err
		}
		name, err := vstr(b, &o)
		if err != nil {
			return nil, nil, err
		}
		switch typ {
		case typeVolume:
			v := volRec{id: id, name: name}
			if v.vtype, err = vstr(b, &o); err != nil {
				return nil, nil, err
			}
			if _, err = vstr(b, &o); err != nil { // disable drive letter
				return nil, nil, err
			}
			if err = skip(b, &o, 21); err != nil { // state, type, flags, number
				return nil, nil, err
			}
			if v.children, err = vnum(b, &o); err != nil {
				return nil, nil, err
			}
			if err = skip(b, &o, 16); err != nil {
				return nil, nil, err
			}
			sz, err := vnum(b, &o)
			if err != nil {
				return nil, nil, err
			}
			v.size = int64(sz) * sector
			vols = append(vols, v)
		case typeComp:
			c := &compRec{id: id, name: name}
			if _, err = vstr(b, &o); err != nil { // state
				return nil, nil, err
			}
			if o >= len(b) {
				return nil, nil, corrupt("component %q too short", name)
			}
			c.typ = int(b[o])
			if err = skip(b, &o, 5); err != nil {
				return nil, nil, err
			}
			if _, err = vnum(b, &o); err != nil { // children
				return nil, nil, err
			}
			if err = skip(b, &o, 16); err != nil {
				return nil, nil, err
			}
			if c.parent, err = vnum(b, &o); err != nil {
				return nil, nil, err
			}
			if flags&flagStripe != 0 {
				if err = skip(b, &o, 1); err != nil {
					return nil, nil, err
				}
				st, err := vnum(b, &o)
				if err != nil {
					return nil, nil, err
				}
				cols, err := vnum(b, &o)
				if err != nil {
					return nil, nil, err
				}
				c.stripe, c.columns = int64(st)*sector, int(cols)
			}
			comps[id] = c
		case typePart:
			var p part
			p.name = name
			if err = skip(b, &o, 12); err != nil {
				return nil, nil, err
			}
			if o+16 > len(b) {
				return nil, nil, corrupt("partition %q too short", name)
			}
			p.start, p.volOffset = int64(be.Uint64(b[o:]))*sector, int64(be.Uint64(b[o+8:]))*sector
			o += 16
			sz, err := vnum(b, &o)
			if err != nil {
				return nil, nil, err
			}
			p.size = int64(sz) * sector
			parent, err := vnum(b, &o)
			if err != nil {
				return nil, nil, err
			}
			if p.diskObj, err = vnum(b, &o); err != nil {
				return nil, nil, err
			}
			if flags&flagIndex != 0 {
				ix, err := vnum(b, &o)
				if err != nil {
					return nil, nil, err
				}
				p.index = int(ix)
			}
			if p.start < 0 || p.size <= 0 || p.volOffset < 0 || p.start > 1<<50 || p.size > 1<<50 || p.volOffset > 1<<50 {
				return nil, nil, corrupt("partition %q: start %d, size %d", name, p.start, p.size)
			}
			parts = append(parts, struct {
				p      part
				parent uint64
			}{p, parent})
		case typeDisk3:
			g, err := vstr(b, &o)
			if err != nil {
				return nil, nil, err
			}
			diskByID[id] = diskRec{id: id, name: name, guid: strings.ToLower(g)}
		case typeDisk4:
			if o+16 > len(b) {
				return nil, nil, corrupt("disk %q too short", name)
			}
			g := b[o : o+16]
			diskByID[id] = diskRec{id: id, name: name, guid: fmt.Sprintf("%x-%x-%x-%x-%x", g[0:4], g[4:6], g[6:8], g[8:10], g[10:16])}
		}
	}
	guidDisk := map[string]*Disk{}
	for _, d := range disks {
		guidDisk[d.GUID] = d
	}
	var out []*Volume
	var problems []string
	plexOf := map[uint64]*plex{}
	volPlexes := map[uint64][]*plex{}
	ids := make([]uint64, 0, len(comps))
	for id := range comps {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		c := comps[id]
		pl := &plex{typ: c.typ, stripe: c.stripe, columns: c.columns}
		plexOf[c.id] = pl
		volPlexes[c.parent] = append(volPlexes[c.parent], pl)
	}
	for _, pp := range parts {
		pl := plexOf[pp.parent]
		if pl == nil {
			problems = append(problems, fmt.Sprintf("partition %s belongs to no component", pp.p.name))
			continue
		}
		p := pp.p
		dr, ok := diskByID[p.diskObj]
		if ok {
			p.diskName, p.diskGUID = dr.name, dr.guid
			p.disk = guidDisk[dr.guid]
		}
		if p.disk != nil && p.start+p.size > p.disk.Size {
			problems = append(problems, fmt.Sprintf("partition %s runs past the data area of %s", p.name, p.disk.Region.Name))
			p.disk = nil
		}
		pl.parts = append(pl.parts, &p)
	}
	for _, v := range vols {
		vol := &Volume{Name: v.name, Size: v.size, plexes: volPlexes[v.id]}
		for _, pl := range vol.plexes {
			sort.Slice(pl.parts, func(i, j int) bool {
				if pl.typ == compStripe || pl.typ == compRAID5 {
					return pl.parts[i].index < pl.parts[j].index
				}
				return pl.parts[i].volOffset < pl.parts[j].volOffset
			})
		}
		switch {
		case v.vtype == "raid5" || (len(vol.plexes) > 0 && vol.plexes[0].typ == compRAID5):
			vol.Type = "raid5"
		case len(vol.plexes) > 1:
			vol.Type = "mirrored"
		case len(vol.plexes) == 1 && vol.plexes[0].typ == compStripe:
			vol.Type = "striped"
		case len(vol.plexes) == 1 && len(vol.plexes[0].parts) > 1:
			vol.Type = "spanned"
		default:
			vol.Type = "simple"
		}
		for _, pl := range vol.plexes {
			for _, p := range pl.parts {
				if p.disk == nil {
					vol.Problems = append(vol.Problems, fmt.Sprintf("partition %s is on disk %s (GUID %s), which is not among the disks of this point", p.name, p.diskName, p.diskGUID))
				}
			}
		}
		out = append(out, vol)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, problems, nil
}

// reader reads one volume.
type reader struct {
	size int64
	read func(p []byte, off int64) error
}

func (r *reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("ldm: negative offset")
	}
	if off >= r.size {
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > r.size-off {
		p, eof = p[:r.size-off], io.EOF
	}
	if err := r.read(p, off); err != nil {
		return 0, err
	}
	return len(p), eof
}

// Size of a reader returned by Open.
func (r *reader) Size() int64 { return r.size }

func (p *part) readAt(b []byte, off int64) error {
	if off < 0 || off+int64(len(b)) > p.size {
		return corrupt("read past partition %s", p.name)
	}
	return partinfo.ReadFull(p.disk.Region, b, p.disk.Start+p.start+off)
}

// plexReader maps a component's bytes to its partitions.
func (pl *plex) reader() (func([]byte, int64) error, error) {
	if pl.typ == compRAID5 {
		return pl.raid5Reader()
	}
	for _, p := range pl.parts {
		if p.disk == nil {
			return nil, fmt.Errorf("ldm: partition %s is on disk %s, which is not among the disks of this point: %w", p.name, p.diskName, ErrMissing)
		}
	}
	switch pl.typ {
	case compSpan:
		return func(b []byte, off int64) error {
			for len(b) > 0 {
				var hit *part
				for _, p := range pl.parts {
					if off >= p.volOffset && off < p.volOffset+p.size {
						hit = p
						break
					}
				}
				if hit == nil {
					return corrupt("offset %d of the volume is in no partition", off)
				}
				k := min(int64(len(b)), hit.volOffset+hit.size-off)
				if err := hit.readAt(b[:k], off-hit.volOffset); err != nil {
					return err
				}
				b, off = b[k:], off+k
			}
			return nil
		}, nil
	case compStripe:
		n := int64(len(pl.parts))
		if n == 0 || pl.stripe <= 0 || (pl.columns != 0 && pl.columns != len(pl.parts)) {
			return nil, corrupt("striped component: %d partitions, %d columns, stripe %d", n, pl.columns, pl.stripe)
		}
		return func(b []byte, off int64) error {
			for len(b) > 0 {
				c, in := off/pl.stripe, off%pl.stripe
				k := min(int64(len(b)), pl.stripe-in)
				if err := pl.parts[c%n].readAt(b[:k], (c/n)*pl.stripe+in); err != nil {
					return err
				}
				b, off = b[k:], off+k
			}
			return nil
		}, nil
	}
	return nil, fmt.Errorf("ldm: component type %d: %w", pl.typ, ErrUnsupported)
}

// Open returns a reader of the volume's bytes (io.ReaderAt with Size).
func (v *Volume) Open() (interface {
	io.ReaderAt
	Size() int64
}, error) {
	if len(v.plexes) == 0 || v.Size <= 0 {
		return nil, corrupt("volume %s has no components", v.Name)
	}
	var errs []string
	for _, pl := range v.plexes {
		read, err := pl.reader()
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		return &reader{size: v.Size, read: read}, nil
	}
	return nil, fmt.Errorf("ldm: volume %s: %s: %w", v.Name, strings.Join(errs, "; "), ErrMissing)
}

// Devices names, in order and once each, the regions (partitions or
// whole disks of the point, as Region.Name gives them) holding a part of
// the volume; a part on a missing disk is named "missing <disk name>".
func (v *Volume) Devices() []string {
	var out []string
	seen := map[string]bool{}
	for _, pl := range v.plexes {
		for _, p := range pl.parts {
			name := "missing " + p.diskName
			if p.disk != nil {
				name = p.disk.Region.Name
			}
			if !seen[name] {
				seen[name] = true
				out = append(out, name)
			}
		}
	}
	return out
}
