package md

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Array is an MD array assembled from the members found.
type Array struct {
	UUID      string
	Name      string // the name to show: 1.x array name (without "host:"), or md<minor>
	Version   string
	Level     int
	Layout    int
	Chunk     int64
	RaidDisks int
	// Members by role; nil where no current member was found.
	Members []*Member
	// Problems lists missing, stale and failed members.
	Problems []string
	Events   uint64
}

// Set is the result of a scan.
type Set struct {
	Arrays []*Array
	// Members lists every device with an MD superblock.
	Members []*Member
	// Problems are damaged superblocks.
	Problems []string
}

// IsMember reports whether the named device is a member (or spare) of
// an array found.
func (s *Set) IsMember(name string) bool {
	for _, m := range s.Members {
		if m.Device.Name == name {
			return true
		}
	}
	return false
}

// LevelName is "raid1", "linear", ...
func LevelName(level int) string {
	if level == LevelLinear {
		return "linear"
	}
	return fmt.Sprintf("raid%d", level)
}

// Scan examines the devices and assembles the arrays. Damaged
// superblocks are reported, never fatal; only a cancelled context ends
// the scan early.
func Scan(ctx context.Context, devs []Device) (*Set, error) {
	set := &Set{}
	byUUID := map[string][]*Member{}
	var order []string
	for _, d := range devs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		m, err := safeExamine(d)
		if err != nil {
			set.Problems = append(set.Problems, err.Error())
		}
		if m == nil {
			continue
		}
		set.Members = append(set.Members, m)
		if byUUID[m.UUID] == nil {
			order = append(order, m.UUID)
		}
		byUUID[m.UUID] = append(byUUID[m.UUID], m)
	}
	names := map[string]int{}
	for _, uuid := range order {
		a := assemble(byUUID[uuid])
		names[a.Name]++
		if names[a.Name] > 1 {
			a.Name = fmt.Sprintf("%s-%s", a.Name, strings.ReplaceAll(a.UUID, ":", "")[:8])
		}
		set.Arrays = append(set.Arrays, a)
	}
	sort.SliceStable(set.Arrays, func(i, j int) bool { return set.Arrays[i].Name < set.Arrays[j].Name })
	return set, nil
}

func safeExamine(d Device) (m *Member, err error) {
	defer func() {
		if p := recover(); p != nil {
			m, err = nil, fmt.Errorf("%s: MD superblock reader failed (%v): %w", d.Name, p, ErrCorrupt)
		}
	}()
	return Examine(d)
}

// assemble builds one array from members of one UUID: the superblock with
// the highest event count describes the array; members with fewer events
// are stale and left out.
func assemble(ms []*Member) *Array {
	newest := ms[0]
	for _, m := range ms {
		if m.Events > newest.Events {
			newest = m
		}
	}
	a := &Array{UUID: newest.UUID, Version: newest.Version, Level: newest.Level, Layout: newest.Layout,
		Chunk: newest.Chunk, RaidDisks: newest.RaidDisks, Events: newest.Events, Members: make([]*Member, newest.RaidDisks)}
	a.Name = newest.Name
	if i := strings.LastIndexByte(a.Name, ':'); i >= 0 {
		a.Name = a.Name[i+1:]
	}
	if a.Name == "" || strings.ContainsAny(a.Name, "/\x00") || a.Name == "." || a.Name == ".." {
		a.Name = fmt.Sprintf("md%d", newest.MDMinor)
	}
	for _, m := range ms {
		switch {
		case m.Events+1 < newest.Events: // one event apart is a clean/dirty flip
			a.Problems = append(a.Problems, fmt.Sprintf("%s is stale (events %d, array %d): left out", m.Device.Name, m.Events, newest.Events))
		case m.Role == RoleFaulty:
			a.Problems = append(a.Problems, fmt.Sprintf("%s is marked faulty: left out", m.Device.Name))
		case m.Role < 0 || m.Role >= a.RaidDisks:
			// a spare
		case a.Members[m.Role] != nil:
			a.Problems = append(a.Problems, fmt.Sprintf("%s and %s both claim slot %d: %s is used", a.Members[m.Role].Device.Name, m.Device.Name, m.Role, a.Members[m.Role].Device.Name))
		default:
			a.Members[m.Role] = m
		}
	}
	for r, m := range a.Members {
		if m == nil {
			a.Problems = append(a.Problems, fmt.Sprintf("slot %d of %d has no member among the disks of this point", r, a.RaidDisks))
		}
	}
	return a
}

// Missing is the number of slots without a member.
func (a *Array) Missing() int {
	n := 0
	for _, m := range a.Members {
		if m == nil {
			n++
		}
	}
	return n
}

// perMember is the bytes of each member the array uses, rounded down to
// the chunk size.
func (a *Array) perMember() int64 {
	var per int64 = -1
	for _, m := range a.Members {
		if m == nil {
			continue
		}
		s := m.DataSize
		if m.UsedSize > 0 && m.UsedSize < s && a.Level != Level0 && a.Level != LevelLinear {
			s = m.UsedSize
		}
		if per < 0 || s < per {
			per = s
		}
	}
	if per < 0 {
		return 0
	}
	if a.Chunk > 0 {
		per -= per % a.Chunk
	}
	return per
}

// Volume reads an array's bytes.
type Volume struct {
	a    *Array
	size int64
	read func(p []byte, off int64) error
}

// Size is the array's size in bytes.
func (v *Volume) Size() int64 { return v.size }

// ReadAt reads the array; io.EOF at its end.
func (v *Volume) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("md %s: negative offset", v.a.Name)
	}
	if off >= v.size {
		return 0, io.EOF
	}
	n := len(p)
	var err error
	if int64(n) > v.size-off {
		n, err = int(v.size-off), io.EOF
	}
	if rerr := v.read(p[:n], off); rerr != nil {
		return 0, fmt.Errorf("md %s at %d: %w", v.a.Name, off, rerr)
	}
	return n, err
}

// member reads the data area of the member in slot r.
func (a *Array) member(r int, p []byte, off int64) error {
	m := a.Members[r]
	n, err := m.Device.ReadAt(p, m.DataOffset+off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// ErrMissing marks arrays with too few members to be read.
var ErrMissing = errors.New("MD array members missing")

// Open returns a reader of the array's bytes.
func (a *Array) Open() (*Volume, error) {
	per := a.perMember()
	n := a.RaidDisks
	missing := a.Missing()
	need := func(max int) error {
		if missing > max {
			return fmt.Errorf("md %s (%s): %d of %d members missing, at most %d can be: %w", a.Name, LevelName(a.Level), missing, n, max, ErrMissing)
		}
		return nil
	}
	if per <= 0 {
		return nil, fmt.Errorf("md %s: no usable member size: %w", a.Name, ErrCorrupt)
	}
	v := &Volume{a: a}
	switch a.Level {
	case Level1:
		if err := need(n - 1); err != nil {
			return nil, err
		}
		v.size = per
		v.read = func(p []byte, off int64) error {
			var err error
			for r, m := range a.Members {
				if m == nil {
					continue
				}
				if err = a.member(r, p, off); err == nil {
					return nil
				}
			}
			return err
		}
	case LevelLinear:
		if err := need(0); err != nil {
			return nil, err
		}
		sizes := make([]int64, n)
		for r, m := range a.Members {
			sizes[r] = m.DataSize
			if a.Chunk > 0 {
				sizes[r] -= sizes[r] % a.Chunk
			}
			v.size += sizes[r]
		}
		v.read = func(p []byte, off int64) error {
			for r := 0; r < n && len(p) > 0; r++ {
				if off >= sizes[r] {
					off -= sizes[r]
					continue
				}
				k := min(int64(len(p)), sizes[r]-off)
				if err := a.member(r, p[:k], off); err != nil {
					return err
				}
				p, off = p[k:], 0
			}
			return nil
		}
	case Level0:
		if err := need(0); err != nil {
			return nil, err
		}
		if a.Chunk <= 0 {
			return nil, fmt.Errorf("md %s: raid0 without a chunk size: %w", a.Name, ErrCorrupt)
		}
		zones, size, err := a.raid0Zones()
		if err != nil {
			return nil, err
		}
		v.size = size
		v.read = a.readZones(zones)
	case Level10:
		g, err := a.raid10Geometry(per)
		if err != nil {
			return nil, err
		}
		if err := g.complete(); err != nil {
			return nil, err
		}
		v.size = g.size
		v.read = g.read
	case Level4, Level5, Level6:
		return a.openParity(v, per)
	default:
		return nil, fmt.Errorf("md %s: level %d: %w", a.Name, a.Level, ErrUnsupported)
	}
	return v, nil
}

// chunked reads by chunks placed by place(chunk) = (slot, row).
func (a *Array) chunked(place func(c int64) (int, int64)) func([]byte, int64) error {
	return func(p []byte, off int64) error {
		for len(p) > 0 {
			c, in := off/a.Chunk, off%a.Chunk
			k := min(int64(len(p)), a.Chunk-in)
			r, row := place(c)
			if err := a.member(r, p[:k], row*a.Chunk+in); err != nil {
				return err
			}
			p, off = p[k:], off+k
		}
		return nil
	}
}
