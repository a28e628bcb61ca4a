package vmconfig

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ErrNewer means a recorded configuration (a point's vm/config.json) holds
// what this cairn does not know: a field it has no name for, or a newer
// version. A newer cairn wrote it; refusing it is safer than restoring a VM
// without what that cairn recorded.
var ErrNewer = errors.New("VM configuration recorded by a newer cairn")

// NewerError is ErrNewer naming the field (or "version") it was found by.
type NewerError struct {
	Field string
	Msg   string
}

func (e *NewerError) Error() string {
	return fmt.Sprintf("%s: field %q %s", ErrNewer, e.Field, e.Msg)
}

// Unwrap makes errors.Is(err, ErrNewer) true.
func (e *NewerError) Unwrap() error { return ErrNewer }

// ParseRecorded decodes the configuration a cairn recorded with a point.
// It is Parse, except that a field this cairn does not know, or a version
// above Version, is a NewerError (the point was written by a newer cairn)
// rather than a mistake in a hand-written file.
func ParseRecorded(data []byte) (*Config, error) {
	cfg, err := Parse(data)
	var fe *FieldError
	if errors.As(err, &fe) {
		switch {
		case fe.Msg == "unknown field":
			return nil, &NewerError{Field: fe.Field, Msg: "is unknown to this cairn"}
		case fe.Field == "version":
			var v struct {
				Version int `json:"version"`
			}
			if versionOf(data, &v) == nil && v.Version > Version {
				return nil, &NewerError{Field: "version", Msg: fmt.Sprintf("is %d and this cairn reads %d", v.Version, Version)}
			}
		}
	}
	return cfg, err
}

func versionOf(data []byte, v any) error { return json.Unmarshal(data, v) }
