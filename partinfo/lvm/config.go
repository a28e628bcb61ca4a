package lvm

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrSyntax marks text metadata that does not follow LVM's config format.
var ErrSyntax = errors.New("LVM metadata syntax error")

// Parser limits: metadata is written by LVM and small; anything beyond
// these is damage, not a real volume group.
const (
	maxDepth  = 16
	maxValues = 1 << 20
)

// Kind is the type of a config value.
type Kind int

// Value kinds.
const (
	KindInt Kind = iota + 1
	KindFloat
	KindString
	KindList
)

// Value is one value of LVM's config format: an integer, a float, a
// string or a list of values.
type Value struct {
	Kind  Kind
	Int   int64
	Float float64
	Str   string
	List  []Value
}

// Section is a "name { ... }" block of the config format: assignments
// and nested sections, in the order they appear.
type Section struct {
	Name     string
	Values   map[string]Value
	Sections []*Section
}

// Section returns the nested section called name, or nil.
func (s *Section) Section(name string) *Section {
	if s == nil {
		return nil
	}
	for _, c := range s.Sections {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// children returns the nested sections (none for a nil section).
func (s *Section) children() []*Section {
	if s == nil {
		return nil
	}
	return s.Sections
}

// Int returns an integer value and whether it was present and an integer.
func (s *Section) Int(key string) (int64, bool) {
	if s == nil {
		return 0, false
	}
	v, ok := s.Values[key]
	if !ok || v.Kind != KindInt {
		return 0, false
	}
	return v.Int, true
}

// Str returns a string value and whether it was present and a string.
func (s *Section) Str(key string) (string, bool) {
	if s == nil {
		return "", false
	}
	v, ok := s.Values[key]
	if !ok || v.Kind != KindString {
		return "", false
	}
	return v.Str, true
}

// List returns a list value (nil when absent or not a list).
func (s *Section) List(key string) []Value {
	if s == nil {
		return nil
	}
	v, ok := s.Values[key]
	if !ok || v.Kind != KindList {
		return nil
	}
	return v.List
}

// Strings returns the string members of a list value, e.g. status flags.
func (s *Section) Strings(key string) []string {
	var out []string
	for _, v := range s.List(key) {
		if v.Kind == KindString {
			out = append(out, v.Str)
		}
	}
	return out
}

// Has reports whether a string list (like status) holds flag.
func (s *Section) Has(key, flag string) bool {
	for _, f := range s.Strings(key) {
		if f == flag {
			return true
		}
	}
	return false
}

// ParseConfig parses LVM's text config format (the metadata format of
// volume groups) into a root section named "". Comments start with '#';
// strings are double-quoted with backslash escapes; lists are [a, b].
func ParseConfig(text []byte) (*Section, error) {
	p := &parser{s: text}
	root, err := p.section("", 0)
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.s) {
		return nil, p.errorf("unexpected %q", p.s[p.pos])
	}
	return root, nil
}

type parser struct {
	s      []byte
	pos    int
	line   int
	values int
}

func (p *parser) errorf(format string, a ...any) error {
	return fmt.Errorf("line %d: %s: %w", p.line+1, fmt.Sprintf(format, a...), ErrSyntax)
}

// skip moves past white space, NULs (the text area is NUL-terminated)
// and comments.
func (p *parser) skip() {
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		switch {
		case c == '\n':
			p.line++
			p.pos++
		case c == ' ' || c == '\t' || c == '\r' || c == 0:
			p.pos++
		case c == '#':
			for p.pos < len(p.s) && p.s[p.pos] != '\n' {
				p.pos++
			}
		default:
			return
		}
	}
}

func isIdent(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == '.' || c == '-' || c == '+' || c == '/' || c == '@' || c == '?'
}

func (p *parser) ident() string {
	start := p.pos
	for p.pos < len(p.s) && isIdent(p.s[p.pos]) {
		p.pos++
	}
	return string(p.s[start:p.pos])
}

// section parses assignments and subsections up to a '}' (depth > 0) or
// the end of the text (the root).
func (p *parser) section(name string, depth int) (*Section, error) {
	if depth > maxDepth {
		return nil, p.errorf("sections nested deeper than %d", maxDepth)
	}
	sec := &Section{Name: name, Values: map[string]Value{}}
	for {
		p.skip()
		if p.pos >= len(p.s) {
			if depth > 0 {
				return nil, p.errorf("section %q not closed", name)
			}
			return sec, nil
		}
		if p.s[p.pos] == '}' {
			if depth == 0 {
				return nil, p.errorf("unexpected '}'")
			}
			p.pos++
			return sec, nil
		}
		key := p.ident()
		if key == "" {
			return nil, p.errorf("expected a name, found %q", p.s[p.pos])
		}
		p.skip()
		if p.pos >= len(p.s) {
			return nil, p.errorf("%q: unexpected end", key)
		}
		switch p.s[p.pos] {
		case '{':
			p.pos++
			sub, err := p.section(key, depth+1)
			if err != nil {
				return nil, err
			}
			sec.Sections = append(sec.Sections, sub)
		case '=':
			p.pos++
			v, err := p.value(0)
			if err != nil {
				return nil, fmt.Errorf("%q: %w", key, err)
			}
			sec.Values[key] = v
		default:
			return nil, p.errorf("%q: expected '=' or '{', found %q", key, p.s[p.pos])
		}
	}
}

func (p *parser) value(depth int) (Value, error) {
	p.values++
	if p.values > maxValues {
		return Value{}, p.errorf("more than %d values", maxValues)
	}
	p.skip()
	if p.pos >= len(p.s) {
		return Value{}, p.errorf("value missing")
	}
	switch c := p.s[p.pos]; {
	case c == '"':
		return p.str()
	case c == '[':
		if depth > 0 {
			return Value{}, p.errorf("nested lists")
		}
		p.pos++
		v := Value{Kind: KindList, List: []Value{}}
		for {
			p.skip()
			if p.pos >= len(p.s) {
				return Value{}, p.errorf("list not closed")
			}
			if p.s[p.pos] == ']' {
				p.pos++
				return v, nil
			}
			if len(v.List) > 0 {
				if p.s[p.pos] != ',' {
					return Value{}, p.errorf("expected ',' or ']' in list, found %q", p.s[p.pos])
				}
				p.pos++
			}
			e, err := p.value(depth + 1)
			if err != nil {
				return Value{}, err
			}
			v.List = append(v.List, e)
		}
	case c == '-' || c >= '0' && c <= '9':
		start := p.pos
		p.pos++
		for p.pos < len(p.s) && (p.s[p.pos] >= '0' && p.s[p.pos] <= '9' || p.s[p.pos] == '.') {
			p.pos++
		}
		tok := string(p.s[start:p.pos])
		if strings.Contains(tok, ".") {
			f, err := strconv.ParseFloat(tok, 64)
			if err != nil {
				return Value{}, p.errorf("bad number %q", tok)
			}
			return Value{Kind: KindFloat, Float: f}, nil
		}
		n, err := strconv.ParseInt(tok, 10, 64)
		if err != nil {
			return Value{}, p.errorf("bad number %q", tok)
		}
		return Value{Kind: KindInt, Int: n}, nil
	default:
		return Value{}, p.errorf("unexpected %q at the start of a value", c)
	}
}

func (p *parser) str() (Value, error) {
	p.pos++ // opening quote
	var b strings.Builder
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		p.pos++
		switch c {
		case '"':
			return Value{Kind: KindString, Str: b.String()}, nil
		case '\\':
			if p.pos >= len(p.s) {
				return Value{}, p.errorf("string not closed")
			}
			b.WriteByte(p.s[p.pos])
			p.pos++
		case '\n':
			p.line++
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return Value{}, p.errorf("string not closed")
}
