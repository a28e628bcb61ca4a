package serve

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// ServeFile is <repo>/serve.json: how `cairn status` and `cairn jobs`
// find the server that runs on a repository. The server writes it when it
// starts and removes it when it stops.
type ServeFile struct {
	PID     int       `json:"pid"`
	Listen  string    `json:"listen"`
	Config  string    `json:"config,omitempty"`
	Started time.Time `json:"started"`
	// TLSCert is the API's certificate when it serves HTTPS: clients on
	// this machine trust exactly this certificate.
	TLSCert string `json:"tls_cert,omitempty"`
	// RepoDev and RepoIno identify the repository directory the server
	// runs on: a copy of the repository (cp -a, rsync, tar while serve
	// runs) carries serve.json along, and is not where that server runs.
	RepoDev uint64 `json:"repo_dev,omitempty"`
	RepoIno uint64 `json:"repo_ino,omitempty"`
}

// dirIdentity is the device and inode of dir (0, 0 when unknown).
func dirIdentity(dir string) (dev, ino uint64) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return 0, 0
	}
	return uint64(st.Dev), st.Ino
}

// ServeFileName is the file's name inside the repository.
const ServeFileName = "serve.json"

func writeServeFile(repoDir string, f ServeFile) error {
	f.RepoDev, f.RepoIno = dirIdentity(repoDir)
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(repoDir, ".serve.json.tmp")
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	return os.Rename(tmp, filepath.Join(repoDir, ServeFileName))
}

// removeServeFile removes serve.json if this process wrote it.
func removeServeFile(repoDir string) {
	if f, err := ReadServeFile(repoDir); err == nil && f.PID == os.Getpid() {
		os.Remove(filepath.Join(repoDir, ServeFileName))
	}
}

// ErrNotServing means no cairn serve runs on the repository.
var ErrNotServing = errors.New("cairn serve is not running on this repository")

// ReadServeFile returns the record of the server running on the
// repository in repoDir, or ErrNotServing when there is none or its
// process is gone (a server killed with SIGKILL leaves the file behind)
// or the record was copied with the repository from another directory.
func ReadServeFile(repoDir string) (*ServeFile, error) {
	data, err := os.ReadFile(filepath.Join(repoDir, ServeFileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotServing
	}
	if err != nil {
		return nil, err
	}
	var f ServeFile
	if err := json.Unmarshal(data, &f); err != nil || f.PID <= 0 || f.Listen == "" {
		return nil, fmt.Errorf("%s: not a serve record: %v", filepath.Join(repoDir, ServeFileName), err)
	}
	if err := syscall.Kill(f.PID, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return nil, ErrNotServing
	}
	if f.RepoIno != 0 {
		if dev, ino := dirIdentity(repoDir); ino != 0 && (dev != f.RepoDev || ino != f.RepoIno) {
			return nil, ErrNotServing // a copy: its server runs on the original
		}
	}
	return &f, nil
}
