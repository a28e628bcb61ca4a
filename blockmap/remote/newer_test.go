package remote

import (
	"errors"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/internal/s3test"
)

// TestNewerFormatsNamed: a remote config or a manifest of a format above
// what this cairn reads says that a newer cairn wrote it and what to do,
// not only that the format is unsupported or damaged.
func TestNewerFormatsNamed(t *testing.T) {
	_, err := parseConfig([]byte(`{"format": 2}`))
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "newer cairn") {
		t.Errorf("config of format 2: %v", err)
	}
	r := newEnvOn(t, s3test.Versity(t), 0).open()
	name := pointsPrefix + "newer"
	data, err := r.sealManifest(name, &manifest{Format: manifestFormatMap + 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.openManifest(name, data)
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "newer cairn") || !strings.Contains(err.Error(), "format 3") {
		t.Errorf("manifest of format 3: %v", err)
	}
}
