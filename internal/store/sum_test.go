package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/zeebo/blake3"
)

// TestFileSum: a file names one checksum, and CheckSum refuses every other
// shape a peer's manifest could hold.
func TestFileSum(t *testing.T) {
	s := sha256.Sum256([]byte("x"))
	b := blake3.Sum256([]byte("x"))
	var f File
	f.SetSum(SHA256, s[:])
	if h, sum := f.Sum(); h != SHA256 || sum != hex.EncodeToString(s[:]) || f.BLAKE3 != "" || f.CheckSum() != nil {
		t.Fatalf("sha256: %v %s %+v", h, sum, f)
	}
	if !f.Matches(s[:], 0) || f.Matches(s[:], 1) || f.Matches(b[:], 0) {
		t.Fatal("Matches")
	}
	f.SetSum(BLAKE3, b[:])
	if h, sum := f.Sum(); h != BLAKE3 || sum != hex.EncodeToString(b[:]) || f.SHA256 != "" || f.CheckSum() != nil {
		t.Fatalf("blake3: %v %s %+v", h, sum, f)
	}
	if !f.Matches(b[:], 0) || f.Matches(s[:], 0) {
		t.Fatal("Matches")
	}
	good := hex.EncodeToString(s[:])
	for _, bad := range []File{
		{},                                   // none
		{SHA256: good, BLAKE3: good},         // both
		{SHA256: good[:62]},                  // short
		{BLAKE3: good + "00"},                // long
		{SHA256: strings.ToUpper(good)},      // not lowercase
		{BLAKE3: "zz" + good[2:]},            // not hex
		{SHA256: " " + good[1:]},             // not hex
		{BLAKE3: strings.Repeat("0", 63)},    // odd
		{SHA256: "", BLAKE3: good[:2] + "g"}, // short, not hex
	} {
		if bad.CheckSum() == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

// TestWriterSwitchesSum: SetNextSum takes effect with the next file, the
// active one keeps the hash it started with, each file's checksum is the
// one it names (checked against the libraries directly), and after a
// restart the files keep their checksums while the active one is hashed
// again from its bytes.
func TestWriterSwitchesSum(t *testing.T) {
	dir := t.TempDir()
	rot := Rotation{MaxSize: 1000}
	w := open(t, dir, rot, State{ActiveFirst: 1}, false, Hooks{})
	next := write(t, w, 1, 3, 200, 0) // one file, not rotated
	w.SetNextSum(BLAKE3)
	next = write(t, w, next, 1, 200, 0) // 4 lines of 210 bytes: still one file
	if h, _ := w.Active().Sum(); h != SHA256 || w.Rotations() != 0 {
		t.Fatalf("the active file switched to %v before it rotated", h)
	}
	next = write(t, w, next, 12, 200, 0)
	files := w.Files()
	if len(files) < 4 {
		t.Fatalf("%d files", len(files))
	}
	for i, f := range files {
		want := BLAKE3
		if i == 0 {
			want = SHA256
		}
		if h, _ := f.Sum(); h != want {
			t.Fatalf("file %d (%s) names %v, want %v", i, f.Name, h, want)
		}
		data, err := os.ReadFile(filepath.Join(dir, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		s, b := sha256.Sum256(data), blake3.Sum256(data)
		if (want == SHA256 && f.SHA256 != hex.EncodeToString(s[:])) || (want == BLAKE3 && f.BLAKE3 != hex.EncodeToString(b[:])) {
			t.Fatalf("file %d: %+v, sha256 %x, blake3 %x", i, f, s, b)
		}
	}
	sums(t, dir, files)
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	cp := w.State(next)
	_ = w.Close()

	// Restarted: a Writer starts with SHA256; the rotated files keep theirs.
	w2 := open(t, dir, rot, cp, true, Hooks{})
	got := w2.Files()
	if !slices.Equal(got[:len(got)-1], files[:len(files)-1]) {
		t.Fatalf("recovered\n%v\nwant\n%v", got, files)
	}
	if h, _ := got[len(got)-1].Sum(); h != SHA256 || got[len(got)-1].Size != files[len(files)-1].Size {
		t.Fatalf("the active file after a restart: %+v", got[len(got)-1])
	}
	sums(t, dir, got)
	// Back to sha256 for the next file, as a node whose peers are older does.
	w2.SetNextSum(BLAKE3)
	w2.SetNextSum(SHA256)
	write(t, w2, next, 8, 200, 0)
	for _, f := range w2.Files() {
		if h, _ := f.Sum(); h == BLAKE3 && f.First >= next {
			t.Fatalf("%s names blake3", f.Name)
		}
	}
	sums(t, dir, w2.Files())
}

// TestCompressFileBLAKE3: a file that names a BLAKE3 checksum is checked
// and read back with it.
func TestCompressFileBLAKE3(t *testing.T) {
	dir, plain, fs := rotatedFile(t, BLAKE3)
	b := blake3.Sum256(plain) // the library itself, not Hash.New
	if fs.BLAKE3 != hex.EncodeToString(b[:]) || fs.SHA256 != "" {
		t.Fatalf("the fixture's checksum: %+v", fs)
	}
	name := fs.Name
	var mu sync.Mutex

	// The sha256 of the same bytes under the blake3 name is a mismatch.
	wrong := fs
	s := sha256.Sum256(plain)
	wrong.SetSum(BLAKE3, s[:])
	if _, err := CompressFile(dir, wrong, &mu, func() error { return nil }); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "blake3") {
		t.Fatalf("a mismatch: %v", err)
	}
	if saved, err := CompressFile(dir, fs, &mu, func() error { return nil }); err != nil || saved <= 0 {
		t.Fatalf("saved %d, %v", saved, err)
	}
	if got := listDir(t, dir); !slices.Equal(got, []string{name + CompressedExt}) {
		t.Fatalf("after compressing: %v", got)
	}
	sums(t, dir, []File{fs})
}
