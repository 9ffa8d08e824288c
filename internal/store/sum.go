package store

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"runtime"
	"strings"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/cpu"
)

// Hash is the checksum a File gives its bytes. Each file names its own
// (File.Sum), so the files of one directory, and the same file on two
// nodes, may use either: a node checks a file with the hash it names.
type Hash uint8

const (
	// SHA256 is every file written before logx's FeatureVersion 4, and
	// every file of a node where BLAKE3 is not faster (Faster).
	SHA256 Hash = iota
	// BLAKE3 (256-bit output), about twice as fast as sha256 with AVX2
	// or AVX-512. A file with a BLAKE3 sum leaves File.SHA256 empty, so a
	// logx that knows only sha256 refuses a manifest holding one rather
	// than checking bytes against the wrong hash.
	BLAKE3
)

// New returns a new hash.Hash computing h.
func (h Hash) New() hash.Hash {
	if h == BLAKE3 {
		return blake3.New()
	}
	return sha256.New()
}

func (h Hash) String() string {
	if h == BLAKE3 {
		return "blake3"
	}
	return "sha256"
}

// Faster is the hash this machine computes faster: BLAKE3 where its
// vector code runs (amd64 with AVX2), sha256 elsewhere (arm64 has
// sha256 instructions, and BLAKE3 would run as plain Go).
func Faster() Hash {
	if runtime.GOARCH == "amd64" && cpu.X86.HasAVX2 {
		return BLAKE3
	}
	return SHA256
}

// Sum is the checksum the file names: which hash, and the hex digest.
// A file that names none (an old manifest) gives SHA256 and "".
func (f File) Sum() (Hash, string) {
	if f.BLAKE3 != "" {
		return BLAKE3, f.BLAKE3
	}
	return SHA256, f.SHA256
}

// SetSum names sum, a digest computed with h, as the file's checksum.
func (f *File) SetSum(h Hash, sum []byte) {
	f.SHA256, f.BLAKE3 = "", ""
	if h == BLAKE3 {
		f.BLAKE3 = hex.EncodeToString(sum)
	} else {
		f.SHA256 = hex.EncodeToString(sum)
	}
}

// CheckSum says whether the file names exactly one checksum, as a
// lowercase hex digest of the right length (what a manifest from a peer
// must hold).
func (f File) CheckSum() error {
	if f.SHA256 != "" && f.BLAKE3 != "" {
		return fmt.Errorf("both a sha256 and a blake3")
	}
	h, sum := f.Sum()
	if len(sum) != 2*32 || strings.Trim(sum, "0123456789abcdef") != "" {
		return fmt.Errorf("no valid %s", h)
	}
	return nil
}

// Matches says whether sum, a digest computed with the hash the file
// names, and size are the file's.
func (f File) Matches(sum []byte, size int64) bool {
	_, want := f.Sum()
	return size == f.Size && hex.EncodeToString(sum) == want
}
