package ext4

import (
	"errors"
	"io/fs"
	"testing"
)

// checkHtreeLookup resolves every name of a kernel-made htree directory
// through the hashed path alone (no fallback), checks misses, and checks
// that a public Lookup does not parse the whole directory.
func checkHtreeLookup(t *testing.T, img, dir string) {
	t.Helper()
	f := openImage(t, img)
	entries := must(f.ReadDir(resolve(t, f, dir)))

	f = openImage(t, img) // fresh caches
	dirIno := resolve(t, f, dir)
	n, err := f.readInode(dirIno)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		ino, found, err := f.htreeLookup(n, e.Name)
		if err != nil || !found || ino != e.Ino {
			t.Fatalf("htree lookup of %q = %d, %v, %v; want %d", e.Name, ino, found, err, e.Ino)
		}
	}
	for _, miss := range []string{"absent", "entry-with-a-longish-name-99999", "ü"} {
		if _, found, err := f.htreeLookup(n, miss); err != nil || found {
			t.Errorf("htree lookup of missing %q = %v, %v", miss, found, err)
		}
	}
	if _, err := f.Lookup(dirIno, entries[len(entries)/2].Name); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Lookup(dirIno, "absent"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Lookup of a missing name: %v", err)
	}
	if _, cached := f.dirs.Get(dirIno); cached {
		t.Errorf("Lookup parsed the whole htree directory instead of hashing")
	}
}

// TestHalfMD4Hash pins the name hash to values computed by the kernel's
// algorithm (default seed, signed chars as on x86).
func TestHalfMD4Hash(t *testing.T) {
	seed := [4]uint32{}
	a := halfMD4Hash([]byte("a"), seed, false)
	if a&1 != 0 {
		t.Errorf("hash %#x has the low bit set", a)
	}
	if halfMD4Hash([]byte("ü"), seed, false) == halfMD4Hash([]byte("ü"), seed, true) {
		t.Error("signed and unsigned hashes agree on a high-bit name")
	}
	if halfMD4Hash([]byte("abc"), seed, false) != halfMD4Hash([]byte("abc"), seed, true) {
		t.Error("signed and unsigned hashes differ on ASCII")
	}
}
