package vsphere

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// Credentials are a vCenter user name and password. They are never
// printed: String and the slog value hide the password.
type Credentials struct {
	User     string
	Password string
}

// String shows the user only.
func (c Credentials) String() string { return c.User + ":***" }

// GoString keeps %#v from printing the password.
func (c Credentials) GoString() string {
	return fmt.Sprintf("vsphere.Credentials{User: %q, Password: \"***\"}", c.User)
}

// LogValue keeps log/slog (text or JSON handler) from printing the
// password.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("user", c.User), slog.String("password", "***"))
}

// MarshalJSON keeps encoding/json from writing the password.
func (c Credentials) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{"user": c.User, "password": "***"})
}

// Environment variables read by CredentialsFromEnv.
const (
	EnvUser     = "CAIRN_VC_USER"
	EnvPassword = "CAIRN_VC_PASSWORD"
)

// ErrNoCredentials means no credentials file was given and the environment
// holds none: the CLI and cairn serve say where to give them.
var ErrNoCredentials = errors.New("no vCenter credentials")

// LoadCredentials reads credentials from file ("user" on the first line,
// "password" on the second), or from $CAIRN_VC_USER and
// $CAIRN_VC_PASSWORD when file is "". A file that group or others may
// read or write is refused: it must be mode 0600 (or stricter).
func LoadCredentials(file string) (Credentials, error) {
	if file == "" {
		c := Credentials{User: os.Getenv(EnvUser), Password: os.Getenv(EnvPassword)}
		if c.User == "" || c.Password == "" {
			return Credentials{}, fmt.Errorf("%w: no credentials file, and %s or %s is not set", ErrNoCredentials, EnvUser, EnvPassword)
		}
		return c, nil
	}
	fi, err := os.Stat(file)
	if err != nil {
		return Credentials{}, fmt.Errorf("credentials file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Credentials{}, fmt.Errorf("credentials file %s is not a regular file", file)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return Credentials{}, fmt.Errorf("credentials file %s has mode %04o: refusing it; make it readable by its owner only (chmod 600 %s)", file, perm, file)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return Credentials{}, fmt.Errorf("credentials file: %w", err)
	}
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	if len(lines) < 2 || strings.TrimSpace(lines[0]) == "" || lines[1] == "" {
		return Credentials{}, errors.New("credentials file " + file + ": want the user name on the first line and the password on the second")
	}
	return Credentials{User: strings.TrimSpace(lines[0]), Password: lines[1]}, nil
}
