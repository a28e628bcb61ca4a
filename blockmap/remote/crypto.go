package remote

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/zeebo/blake3"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
)

// ID is a block id (keyed MAC of the block) or a pack id (random).
type ID [32]byte

func (id ID) String() string { return hex.EncodeToString(id[:]) }

func parseID(s string) (ID, error) {
	var id ID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("bad object id %q", s)
	}
	copy(id[:], b)
	return id, nil
}

func randomID() ID {
	var id ID
	if _, err := rand.Read(id[:]); err != nil {
		panic(err)
	}
	return id
}

// KDF are the argon2id parameters that turn a secret into the key that
// wraps the master key.
type KDF struct {
	Alg       string `json:"alg"`
	Salt      []byte `json:"salt"`
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
}

// defaultKDF costs about 64 MiB and a fraction of a second once per open.
func defaultKDF() KDF {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		panic(err)
	}
	return KDF{Alg: "argon2id", Salt: salt, Time: 3, MemoryKiB: 64 << 10, Threads: 2}
}

func (k KDF) derive(secret []byte) ([]byte, error) {
	if k.Alg != "argon2id" || k.Time == 0 || k.MemoryKiB == 0 || k.Threads == 0 || len(k.Salt) < 16 {
		return nil, fmt.Errorf("%w: unsupported key derivation %q", ErrFormat, k.Alg)
	}
	if k.MemoryKiB > 4<<20 || k.Time > 100 {
		return nil, fmt.Errorf("%w: key derivation parameters too large (memory %d KiB, time %d)", ErrFormat, k.MemoryKiB, k.Time)
	}
	return argon2.IDKey(secret, k.Salt, k.Time, k.MemoryKiB, k.Threads, chacha20poly1305.KeySize), nil
}

// keys are the master keys of a remote.
type keys struct {
	aead cipher.AEAD
	mac  [32]byte // block ids
	name [32]byte // manifest names
	// macs keeps keyed BLAKE3 hashers for blockID: a hasher is 11 KiB,
	// and one per block was a stream of garbage for the GC (replication
	// and the remote reader hash every block).
	macs sync.Pool
}

const masterKeyLen = 96

func newKeys(master []byte) (*keys, error) {
	if len(master) != masterKeyLen {
		return nil, fmt.Errorf("%w: master key of %d bytes", ErrFormat, len(master))
	}
	a, err := chacha20poly1305.NewX(master[:32])
	if err != nil {
		return nil, err
	}
	k := &keys{aead: a}
	copy(k.mac[:], master[32:64])
	copy(k.name[:], master[64:96])
	return k, nil
}

// blockID is the keyed MAC of a block's bytes.
func (k *keys) blockID(data []byte) ID {
	h, _ := k.macs.Get().(*blake3.Hasher)
	if h == nil {
		h, _ = blake3.NewKeyed(k.mac[:])
	}
	h.Write(data)
	var id ID
	h.Sum(id[:0])
	h.Reset() // keeps the key
	k.macs.Put(h)
	return id
}

// manifestName is the object name of a point's manifest.
func (k *keys) manifestName(vm, point string) string {
	h, _ := blake3.NewKeyed(k.name[:])
	h.Write([]byte("manifest\x00" + vm + "\x00" + point))
	var id ID
	h.Sum(id[:0])
	return id.String()
}

// seal appends nonce || ciphertext of plain, with a random nonce, to dst.
func seal(a cipher.AEAD, dst, plain, ad []byte) []byte {
	ns := a.NonceSize()
	dst = slices.Grow(dst, ns+len(plain)+a.Overhead())
	n := len(dst)
	dst = dst[:n+ns]
	if _, err := rand.Read(dst[n:]); err != nil {
		panic(err)
	}
	return a.Seal(dst, dst[n:], plain, ad)
}

var errAuth = errors.New("authentication failed")

// open decrypts nonce || ciphertext.
func open(a cipher.AEAD, dst, sealed, ad []byte) ([]byte, error) {
	ns := a.NonceSize()
	if len(sealed) < ns+a.Overhead() {
		return nil, errAuth
	}
	out, err := a.Open(dst, sealed[:ns], sealed[ns:], ad)
	if err != nil {
		return nil, errAuth
	}
	return out, nil
}

// kekAEAD is the cipher of the key derived from secret.
func kekAEAD(kdf KDF, secret []byte) (cipher.AEAD, error) {
	kek, err := kdf.derive(secret)
	if err != nil {
		return nil, err
	}
	return chacha20poly1305.NewX(kek)
}

const masterAD = "cairn remote master key"

// wrapMaster seals the master key with a key derived from secret.
func wrapMaster(kdf KDF, secret, master []byte) ([]byte, error) {
	a, err := kekAEAD(kdf, secret)
	if err != nil {
		return nil, err
	}
	return seal(a, nil, master, []byte(masterAD)), nil
}

// unwrapMaster opens the wrapped master key; a wrong secret is ErrWrongKey.
func unwrapMaster(kdf KDF, secret, wrapped []byte) ([]byte, error) {
	a, err := kekAEAD(kdf, secret)
	if err != nil {
		return nil, err
	}
	m, err := open(a, nil, wrapped, []byte(masterAD))
	if err != nil {
		return nil, ErrWrongKey
	}
	return m, nil
}

const keyCacheContext = "cairn remote key cache v1"

// keyCacheAEAD is the cipher of a key cache: its key is derived from the
// secret and the remote's wrapped master key, so a cache opens only with
// the same secret for the same remote.
func keyCacheAEAD(secret, wrapped []byte) (cipher.AEAD, error) {
	material := make([]byte, 0, 8+len(secret)+len(wrapped))
	material = binary.LittleEndian.AppendUint64(material, uint64(len(secret)))
	material = append(append(material, secret...), wrapped...)
	key := make([]byte, chacha20poly1305.KeySize)
	blake3.DeriveKey(keyCacheContext, material, key)
	return chacha20poly1305.NewX(key)
}

// readKeyCache returns the master key kept in path, if path holds one
// sealed for this secret and wrapped key.
func readKeyCache(path string, secret, wrapped []byte) ([]byte, bool) {
	if path == "" {
		return nil, false
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, false
	}
	a, err := keyCacheAEAD(secret, wrapped)
	if err != nil {
		return nil, false
	}
	m, err := open(a, nil, data, []byte(keyCacheContext))
	if err != nil || len(m) != masterKeyLen {
		return nil, false
	}
	return m, true
}

// writeKeyCache keeps the master key in path (mode 0600).
func writeKeyCache(path string, secret, wrapped, master []byte) error {
	if path == "" {
		return nil
	}
	a, err := keyCacheAEAD(secret, wrapped)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, seal(a, nil, master, []byte(keyCacheContext)), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
