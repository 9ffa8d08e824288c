package store

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// ErrCorrupt is a directory whose files contradict its checkpoint. The
// logx package exports the same value as logx.ErrCorrupt.
var ErrCorrupt = errors.New("logx: corrupt data directory")

// File describes a log file: its first sequence number, size and the
// checksum of its bytes, a sha256 or a BLAKE3 (Sum, sum.go). It is part of
// the checkpoint and of the snapshot manifest, both JSON: its field names
// are a file format.
type File struct {
	Name   string `json:"name"`
	First  uint64 `json:"first"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`           // empty when BLAKE3 is set
	BLAKE3 string `json:"blake3,omitempty"` // since FeatureVersion 4
	Newest int64  `json:"newest,omitempty"` // line clock of its newest line; 0: none

	// MinTime and MaxTime are the earliest and latest time of its lines
	// as their heads show them (LineTime; a line without a time counts
	// as 0), recorded as they are written; Grep skips files whose range
	// lies outside a query's. Lines are not in time order (entry times
	// are the callers' clocks), so only the whole range says which times
	// a file holds. Both 0: not recorded.
	MinTime int64 `json:"min_time,omitempty"`
	MaxTime int64 `json:"max_time,omitempty"`
}

// LineTime is the time a line's head shows for an entry whose record says
// unixNano (the time its body was rendered with), in Unix nanoseconds: the
// head shows microseconds, cut down. An entry without a time (0) stays 0:
// counting it in a range only widens the range.
func LineTime(unixNano int64) int64 {
	r := unixNano % 1000
	if r < 0 {
		r += 1000
	}
	if unixNano < math.MinInt64+r {
		return math.MinInt64
	}
	return unixNano - r
}

// Names derives a log's file names from its active file's name: rotated
// files are <stem>-<first sequence number, 20 digits><ext>.
type Names struct {
	name string // the active file
	stem string // name without extension
	ext  string
}

// NewNames returns the names of the log whose active file is name.
func NewNames(name string) Names {
	ext := filepath.Ext(name)
	return Names{name: name, stem: strings.TrimSuffix(name, ext), ext: ext}
}

// Active is the active file's name.
func (n Names) Active() string { return n.name }

// Segment is the name of the rotated file whose first line has sequence
// number first.
func (n Names) Segment(first uint64) string {
	return fmt.Sprintf("%s-%020d%s", n.stem, first, n.ext)
}

// ParseSegment returns the first sequence number of a rotated file name.
func (n Names) ParseSegment(name string) (uint64, bool) {
	if !strings.HasPrefix(name, n.stem+"-") || !strings.HasSuffix(name, n.ext) {
		return 0, false
	}
	digits := name[len(n.stem)+1 : len(name)-len(n.ext)]
	if len(digits) != 20 {
		return 0, false
	}
	v, err := strconv.ParseUint(digits, 10, 64)
	return v, err == nil
}

// ParseStored is ParseSegment for a rotated file's name on disk, which
// may be its compressed form (name+CompressedExt): it returns the plain
// name as well.
func (n Names) ParseStored(name string) (plain string, first uint64, compressed, ok bool) {
	if p, cut := strings.CutSuffix(name, CompressedExt); cut {
		if first, ok := n.ParseSegment(p); ok {
			return p, first, true, true
		}
	}
	first, ok = n.ParseSegment(name)
	return name, first, false, ok
}

// RetiredName is the name a retired file waits under until it is deleted.
func RetiredName(name string) string { return ".retired-" + name }

// LogFiles returns the names of the log files in dir for the active file
// name, rotated files first in log order and the active file last. A
// rotated file kept compressed has its name on disk (ending in
// CompressedExt); while one is being replaced by its compressed form and
// both are there, the plain name is given.
func LogFiles(dir, name string) ([]string, error) {
	files, err := StoredFiles(dir, name)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = f.Stored
	}
	return out, nil
}

// Stored is a log file as LogFiles finds it.
type Stored struct {
	Name   string // the plain name
	Stored string // the name on disk: Name, or Name+CompressedExt
	First  uint64 // of a rotated file; 0 for the active file
}

// StoredFiles is LogFiles with each file's plain name and first sequence
// number.
func StoredFiles(dir, name string) ([]Stored, error) {
	n := NewNames(name)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var rotated []Stored
	active := false
	for _, e := range ents {
		if e.Name() == name {
			active = true
		} else if plain, first, _, ok := n.ParseStored(e.Name()); ok {
			rotated = append(rotated, Stored{Name: plain, Stored: e.Name(), First: first})
		}
	}
	// Plain before compressed for the same file: the plain one is kept.
	sort.Slice(rotated, func(i, j int) bool {
		if rotated[i].First != rotated[j].First {
			return rotated[i].First < rotated[j].First
		}
		return len(rotated[i].Stored) < len(rotated[j].Stored)
	})
	rotated = slices.CompactFunc(rotated, func(a, b Stored) bool { return a.First == b.First })
	if active {
		rotated = append(rotated, Stored{Name: name, Stored: name})
	}
	return rotated, nil
}

// WriteFileAtomic writes b to a temporary file, fsyncs it and renames it
// over path, then fsyncs the directory.
func WriteFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs a directory, so that renames and new files in it last.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// MkdirSynced creates dir and any missing parents, as os.MkdirAll does,
// and fsyncs the parent of each one it creates, so that a power cut does
// not lose the new directory's entry (a stream created, then its files
// and Raft log written in it, all fsynced, under a name the disk forgot).
func MkdirSynced(dir string) error {
	dir = filepath.Clean(dir)
	var made []string // the missing ones, deepest first
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || !errors.Is(err, os.ErrNotExist) {
			break
		}
		made = append(made, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := len(made) - 1; i >= 0; i-- {
		if err := SyncDir(filepath.Dir(made[i])); err != nil {
			return err
		}
	}
	return nil
}

// AnyCopy reports whether dir holds the rotated file name in any form:
// plain or compressed, under its name or retired (an error other than
// "not there" counts as there).
func AnyCopy(dir, name string) bool {
	for _, n := range []string{name, name + CompressedExt, RetiredName(name), RetiredName(name + CompressedExt)} {
		if _, err := os.Lstat(filepath.Join(dir, n)); !errors.Is(err, os.ErrNotExist) {
			return true
		}
	}
	return false
}
