package store

import (
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logx-dev/logx/internal/pagecache"
)

// State is the part of a checkpoint that describes the files: the active
// file's first sequence number, the bytes of it covered, the clock of its
// newest line and the time range of its lines, and the rotated files. The
// logx package embeds it in its checkpoint (state.json), so its JSON names
// are a file format.
type State struct {
	ActiveFirst  uint64 `json:"active_first"`            // first sequence number of the active file
	ActiveSize   int64  `json:"active_size"`             // bytes of the active file covered
	Rotated      []File `json:"rotated"`                 // rotated files, oldest first
	ActiveNewest int64  `json:"active_newest,omitempty"` // line clock of the active file's newest line
	// The time range of the active file's lines (see File.MinTime); both
	// 0 when not known.
	ActiveMinTime int64 `json:"active_min_time,omitempty"`
	ActiveMaxTime int64 `json:"active_max_time,omitempty"`
	// ActiveSum is the checksum of the ActiveSize bytes covered, as
	// "<hash>:<hex digest>" (Hash.String); "" when the file is empty, or
	// in a checkpoint written before 2026-12-07. Open checks the bytes
	// against it: a running node keeps its hash in memory, but a start
	// hashes what the disk holds, and without it a file changed on the
	// disk would be taken as written, its damage then recorded in the
	// file's checksum once it rotated and copied to peers that catch up.
	ActiveSum string `json:"active_sum,omitempty"`
}

// ActiveSum is State.ActiveSum for a file whose checksum is f's.
func ActiveSum(f File) string {
	h, sum := f.Sum()
	if sum == "" {
		return ""
	}
	return h.String() + ":" + sum
}

// parseActiveSum reads State.ActiveSum.
func parseActiveSum(s string) (Hash, string, error) {
	name, sum, _ := strings.Cut(s, ":")
	var h Hash
	switch name {
	case SHA256.String():
		h = SHA256
	case BLAKE3.String():
		h = BLAKE3
	default:
		return 0, "", fmt.Errorf("active_sum %q names no known hash", s)
	}
	if len(sum) != 64 || strings.Trim(sum, "0123456789abcdef") != "" {
		return 0, "", fmt.Errorf("active_sum %q is not a hex digest", s)
	}
	return h, sum, nil
}

// Rotation is when the active file is rotated. Every node of a cluster
// must use the same.
type Rotation struct {
	MaxSize int64         // rotate when a line would take the file past this
	Every   time.Duration // rotate when a line's clock enters a new period (0: never)
}

// Hooks are test seams; nil fields do nothing.
type Hooks struct {
	// Fault is asked before every write and fsync of the log files: an
	// error from it fails the write (a full disk) after half the bytes.
	Fault func() error
	// Synced is told that the first size bytes of the file at path are
	// durable: after an fsync, after recovery cut the file back, and when
	// a rotation starts a new file.
	Synced func(path string, size int64)
}

// Writer appends lines to the active file and rotates it. One goroutine
// uses it (Raft's apply); ActiveFirst, Names and Dir may be called from
// any.
type Writer struct {
	names Names
	dir   string
	rot   Rotation
	hooks Hooks

	f       *os.File
	first   uint64 // first sequence number of the active file
	size    int64
	newest  int64     // entry clock of the active file's newest line
	buf     []byte    // lines not yet written
	sum     Hash      // the hash the active file names
	hash    hash.Hash // sum of the active file's bytes
	rotated []File    // rotated files, oldest first

	// nextSum holds the hash the next active file will name: ownSum, or
	// what FollowSum gave; the active file keeps the one it started with.
	nextSum *atomic.Uint32
	ownSum  atomic.Uint32

	// minTime and maxTime are the range of the active file's line times
	// (LineTime); timesKnown is false while it holds lines from before a
	// restart whose range the checkpoint did not record.
	minTime, maxTime int64
	timesKnown       bool

	// Each Sync drops the bytes the Sync before it made durable (synced:
	// the active file's size then) from the page cache, so the newest
	// checkpoint interval's lines stay cached for readers that follow the
	// log; a rotation drops the whole file it seals (internal/pagecache).
	// With keepRotated neither drops: a compressor reads the file once it
	// is sealed, then removes it.
	synced      int64
	keepRotated bool

	rotations   uint64
	activeFirst atomic.Uint64 // first, for readers on other goroutines
	// retiredBelow: every rotated file starting below it has been retired
	// (renamed under Retire's lock, or found missing) since this Writer
	// opened; for other goroutines.
	retiredBelow atomic.Uint64
}

// Open recovers the files of dir to the checkpoint st (known is false when
// there is none: a new directory) and opens the active file name for
// appending. Everything past the checkpoint is undone: the active file is
// cut back to the covered size (a torn last line included), files rotated
// after it are put back or removed, and files retired after it return;
// the caller then writes the same lines again. stateFile names the
// checkpoint in errors.
func Open(dir, name string, rot Rotation, st State, known bool, stateFile string, hooks Hooks) (*Writer, error) {
	w := &Writer{names: NewNames(name), dir: dir, rot: rot, hooks: hooks, first: st.ActiveFirst, size: st.ActiveSize,
		newest: st.ActiveNewest, sum: SHA256, hash: SHA256.New(), rotated: slices.Clone(st.Rotated),
		minTime: st.ActiveMinTime, maxTime: st.ActiveMaxTime, timesKnown: st.ActiveMinTime != 0 || st.ActiveMaxTime != 0,
		synced: st.ActiveSize}
	w.activeFirst.Store(w.first)
	w.nextSum = &w.ownSum
	active := filepath.Join(dir, name)

	// Files the checkpoint still lists that retention retired after it:
	// put them back; the caller retires them again.
	for _, fs := range st.Rotated {
		if err := unretire(dir, fs.Name); err != nil {
			return nil, err
		}
	}

	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	activeSeg := ""
	for _, e := range ents {
		name := e.Name()
		_, first, compressed, ok := w.names.ParseStored(name)
		if rest, retired := strings.CutPrefix(name, RetiredName("")); retired {
			// Retired after the checkpoint: undo like a rotation, since
			// the caller rotates and retires it again.
			if _, first, compressed, ok = w.names.ParseStored(rest); !ok || first < st.ActiveFirst {
				continue
			}
			if !known { // refused below: leave it as it is
				return nil, fmt.Errorf("%w: %s exists but %s does not", ErrCorrupt, name, stateFile)
			}
			if err := os.Rename(filepath.Join(dir, name), filepath.Join(dir, rest)); err != nil {
				return nil, err
			}
			name = rest
		}
		if !ok {
			continue
		}
		if !known {
			return nil, fmt.Errorf("%w: %s exists but %s does not", ErrCorrupt, name, stateFile)
		}
		switch {
		case first == st.ActiveFirst && compressed:
			// Only files a checkpoint lists as rotated are compressed,
			// and checkpoints do not go back.
			return nil, fmt.Errorf("%w: %s is compressed, but %s says it is the active file", ErrCorrupt, name, stateFile)
		case first == st.ActiveFirst:
			activeSeg = name
		case first > st.ActiveFirst: // rotated after the checkpoint: undo
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return nil, err
			}
		}
	}
	if activeSeg != "" {
		// A rotation of the checkpointed active file was under way: put it back.
		if err := os.Rename(filepath.Join(dir, activeSeg), active); err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile(active, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := w.recoverActive(f, st, known, stateFile); err != nil {
		f.Close()
		return nil, err
	}
	w.f = f
	w.noteSynced()
	return w, nil
}

// recoverActive cuts the active file f back to the checkpoint's size and
// resumes its checksum.
func (w *Writer) recoverActive(f *os.File, st State, known bool, stateFile string) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() > 0 && !known {
		return fmt.Errorf("%w: %s holds %d bytes but %s is missing", ErrCorrupt, f.Name(), fi.Size(), stateFile)
	}
	if fi.Size() < st.ActiveSize {
		return fmt.Errorf("%w: %s has %d bytes, the checkpoint says %d", ErrCorrupt, f.Name(), fi.Size(), st.ActiveSize)
	}
	// The bytes covered must be those the checkpoint hashed, checked
	// before anything is cut (a checkpoint whose size is wrong left the
	// file cut at it, though it was refused). The Writer
	// goes on with sha256 (the hash of a file reopened), so a file that
	// names BLAKE3 is hashed with both in one read.
	var check hash.Hash
	var want string
	if st.ActiveSum != "" && st.ActiveSize > 0 {
		h, sum, err := parseActiveSum(st.ActiveSum)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrCorrupt, stateFile, err)
		}
		want = sum
		if check = w.hash; h != w.sum {
			check = h.New()
		}
	}
	var dst io.Writer = w.hash
	if check != nil && check != w.hash {
		dst = io.MultiWriter(w.hash, check)
	}
	if _, err := io.Copy(dst, io.NewSectionReader(f, 0, st.ActiveSize)); err != nil {
		return err
	}
	if check != nil && hex.EncodeToString(check.Sum(nil)) != want {
		return fmt.Errorf("%w: the first %d bytes of %s do not match the checksum %s recorded (%s): they changed on the disk since they were written",
			ErrCorrupt, st.ActiveSize, f.Name(), stateFile, st.ActiveSum)
	}
	if fi.Size() > st.ActiveSize {
		// Lines applied after the checkpoint, possibly torn: the caller
		// writes them again.
		if err := f.Truncate(st.ActiveSize); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if _, err := f.Seek(st.ActiveSize, io.SeekStart); err != nil {
		return err
	}
	return SyncDir(w.dir)
}

// Add buffers one line whose sequence number is seq, entry clock clock and
// record time unixNano (what its head shows; 0: none), rotating first when
// the line would take the active file past the maximum size, or when its
// clock is in a later period than the file's newest line.
func (w *Writer) Add(seq uint64, line []byte, clock, unixNano int64) error {
	if w.size > 0 && (w.size+int64(len(line)) > w.rot.MaxSize || w.newPeriod(clock)) {
		if err := w.rotate(seq); err != nil {
			return err
		}
	}
	if w.size == 0 {
		if next := Hash(w.nextSum.Load()); next != w.sum { // nothing hashed yet
			w.sum, w.hash = next, next.New()
		}
		w.first = seq
		w.activeFirst.Store(seq)
		w.newest = 0
		w.minTime, w.maxTime, w.timesKnown = math.MaxInt64, math.MinInt64, true
	}
	w.newest = max(w.newest, clock)
	t := LineTime(unixNano)
	w.minTime, w.maxTime = min(w.minTime, t), max(w.maxTime, t)
	w.buf = append(w.buf, line...)
	w.size += int64(len(line))
	if len(w.buf) >= bufSize {
		return w.Flush()
	}
	return nil
}

// bufSize is how many bytes of lines Add gathers before it writes them.
// Raft hands apply many batches at once; writing as they come keeps the
// buffer small, where one write per call would grow it to all of them.
const bufSize = 256 << 10

// newPeriod reports whether clock falls in a later rotation period than the
// active file's newest line. Periods are multiples of the interval counted
// from the Unix epoch, so hourly and daily files start on the hour and at
// midnight UTC. Lines without a clock (0) never rotate, and a file none of
// whose lines has one is not rotated by time.
func (w *Writer) newPeriod(clock int64) bool {
	every := int64(w.rot.Every)
	return every > 0 && clock > 0 && w.newest > 0 && clock/every > w.newest/every
}

// Flush writes the buffered lines.
func (w *Writer) Flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	if w.hooks.Fault != nil {
		if err := w.hooks.Fault(); err != nil {
			_, _ = w.f.Write(w.buf[:len(w.buf)/2]) // as a full disk does: part of it
			return err
		}
	}
	_, err := w.f.Write(w.buf)
	w.hash.Write(w.buf)
	w.buf = w.buf[:0]
	return err
}

// Active describes the active file as written so far (after Flush).
func (w *Writer) Active() File {
	fs := File{Name: w.names.name, First: w.first, Size: w.size, Newest: w.newest}
	fs.SetSum(w.sum, w.hash.Sum(nil))
	fs.MinTime, fs.MaxTime = w.timeRange()
	return fs
}

// Files is every file of the log as written so far (after Flush): the
// rotated ones, oldest first, and the active one last.
func (w *Writer) Files() []File { return append(slices.Clone(w.rotated), w.Active()) }

// State is the checkpoint of the files as written so far (after Flush and
// Sync). next is the sequence number the next line will have: the active
// file's first when it is empty.
func (w *Writer) State(next uint64) State {
	st := State{ActiveFirst: w.first, ActiveSize: w.size, ActiveNewest: w.newest, Rotated: slices.Clone(w.rotated)}
	if w.size == 0 {
		st.ActiveFirst = next
	}
	st.ActiveMinTime, st.ActiveMaxTime = w.timeRange()
	if w.size > 0 {
		st.ActiveSum = ActiveSum(w.Active())
	}
	return st
}

// timeRange is the range of the active file's line times, or 0, 0 when it
// is empty or not known.
func (w *Writer) timeRange() (int64, int64) {
	if w.size == 0 || !w.timesKnown {
		return 0, 0
	}
	return w.minTime, w.maxTime
}

// Rotations counts the rotations since Open.
func (w *Writer) Rotations() uint64 { return w.rotations }

// SetRotation changes when the active file rotates (the cluster's settings
// became known).
func (w *Writer) SetRotation(r Rotation) { w.rot = r }

// SetNextSum has the files the Writer starts from now on name h: from
// the first line of an empty active file, so the active file keeps the
// hash it started with. Any goroutine may call it; a Writer starts with
// SHA256.
func (w *Writer) SetNextSum(h Hash) { w.nextSum.Store(uint32(h)) }

// FollowSum has the files the Writer starts from now on name the Hash src
// holds whenever each starts, in place of SetNextSum's: the owner of src
// sets it for every Writer it opens, with no window between opening one
// and telling it. Call it from the goroutine that uses the Writer.
func (w *Writer) FollowSum(src *atomic.Uint32) { w.nextSum = src }

// KeepRotated leaves the active file in the page cache, also once a
// rotation seals it, for a compressor to read (CompressFile drops its
// output and removes it): up to MaxSize bytes, and the sealed files the
// compressor has not yet replaced.
func (w *Writer) KeepRotated() { w.keepRotated = true }

// rotate closes the active file under its rotated name and starts a new one
// whose first line will be next.
func (w *Writer) rotate(next uint64) error {
	if err := w.Flush(); err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		return err
	}
	if !w.keepRotated {
		pagecache.Drop(w.f, 0) // a rotated file is seldom read
	}
	if err := w.f.Close(); err != nil {
		return err
	}
	active := filepath.Join(w.dir, w.names.name)
	done := w.Active()
	done.Name = w.names.Segment(w.first)
	if err := os.Rename(active, filepath.Join(w.dir, done.Name)); err != nil {
		return err
	}
	w.rotated = append(w.rotated, done)
	f, err := os.OpenFile(active, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	w.f = f
	w.first = next
	w.activeFirst.Store(next)
	w.size = 0
	w.synced = 0
	w.newest = 0
	w.hash.Reset()
	w.rotations++
	w.noteSynced()
	return SyncDir(w.dir)
}

// Sync fsyncs the active file.
func (w *Writer) Sync() error {
	if w.hooks.Fault != nil {
		if err := w.hooks.Fault(); err != nil {
			return err
		}
	}
	if err := w.f.Sync(); err != nil {
		return err
	}
	if w.synced > 0 && !w.keepRotated {
		pagecache.Drop(w.f, w.synced)
	}
	w.synced = w.size
	w.noteSynced()
	return nil
}

// noteSynced tells the Synced hook the active file's durable size.
func (w *Writer) noteSynced() {
	if w.hooks.Synced != nil {
		w.hooks.Synced(filepath.Join(w.dir, w.names.name), w.size)
	}
}

// Close closes the active file (without a Flush).
func (w *Writer) Close() error {
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// RetireBy is what Retire retires by.
type RetireBy struct {
	MaxFiles int           // keep at most this many rotated files (0: no limit)
	MaxAge   time.Duration // retire files whose newest line clock is older (0: no limit)
	Clock    int64         // the clock MaxAge counts from (0: unknown, none by age)
	Before   uint64        // retire files whose lines are all below it (0: none; a truncation)
	// Unclocked has a file without a line clock go by age with the next
	// rotated file that has one; without it, such a file stops retirement
	// by age (an earlier rule, which a log keeps until it changes it).
	Unclocked bool
}

// Retire takes the oldest rotated files out of the log while there are
// more than by.MaxFiles, or the oldest one's newest line clock (see
// Unclocked) is more than by.MaxAge older than by.Clock, or every line of
// the oldest has a sequence number below by.Before, and returns them. A
// retired file is renamed to RetiredName, not deleted: a peer catching up
// from a recent snapshot may still fetch it. Each rename is made holding
// lock.
//
// The files retired leave w.rotated once, at the end: one call may retire
// most of a long list (a lower MaxFiles, a truncation), and taking them
// out one at a time cost the whole list each.
func (w *Writer) Retire(by RetireBy, lock sync.Locker) ([]File, error) {
	var out []File
	n := 0 // w.rotated[:n] are retired
	defer func() {
		if n > 0 {
			w.rotated = slices.Clone(w.rotated[n:])
		}
	}()
	for ; n < len(w.rotated); n++ {
		old := w.rotated[n]
		next := w.first // the file after old starts here
		if n+1 < len(w.rotated) {
			next = w.rotated[n+1].First
		}
		byCount := by.MaxFiles > 0 && len(w.rotated)-n > by.MaxFiles
		byAge := false
		if by.MaxAge > 0 && by.Clock > 0 {
			newest := old.Newest
			// Without a line clock (its lines came before the log clock
			// was known), a file is older than the next one with one.
			for k := n + 1; by.Unclocked && newest == 0 && k < len(w.rotated); k++ {
				newest = w.rotated[k].Newest
			}
			byAge = newest > 0 && newest < by.Clock-int64(by.MaxAge)
		}
		bySeq := by.Before > 0 && next <= by.Before
		if !byCount && !byAge && !bySeq {
			break
		}
		lock.Lock()
		err := retire(w.dir, old.Name)
		if err == nil {
			w.retiredBelow.Store(next)
		}
		lock.Unlock()
		if err != nil {
			return out, err
		}
		out = append(out, old)
	}
	return out, nil
}

// OpenFile opens the log file whose first sequence number is first: a
// rotated file (or one retired but not yet deleted), or the active file.
// It may be called from any goroutine: a rotation can rename the active
// file between the look-ups, and the checks below make sure the file
// returned is the one asked for.
func (w *Writer) OpenFile(first uint64) (*Segment, error) {
	rotated := filepath.Join(w.dir, w.names.Segment(first))
	if s, err := OpenSegment(rotated); !errors.Is(err, os.ErrNotExist) {
		return s, err
	}
	// Retired by retention, but a snapshot that lists it may be in use.
	if s, err := OpenSegment(filepath.Join(w.dir, RetiredName(w.names.Segment(first)))); !errors.Is(err, os.ErrNotExist) {
		return s, err
	}
	if w.activeFirst.Load() != first {
		return nil, fmt.Errorf("no segment starts at %d", first)
	}
	fh, err := os.Open(filepath.Join(w.dir, w.names.name))
	if err != nil {
		return nil, err
	}
	if rs, err := OpenSegment(rotated); err == nil { // rotated meanwhile
		fh.Close()
		return rs, nil
	}
	if w.activeFirst.Load() != first {
		fh.Close()
		return nil, fmt.Errorf("segment %d rotated away", first)
	}
	return &Segment{f: fh}, nil
}

// retire renames the rotated file name, in either form, to its retired
// name. A file in neither form is not an error.
func retire(dir, name string) error {
	for _, n := range []string{name, name + CompressedExt} {
		err := os.Rename(filepath.Join(dir, n), filepath.Join(dir, RetiredName(n)))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// unretire puts back the rotated file name, in the form it was retired
// in, if it is not there in either form.
func unretire(dir, name string) error {
	for _, n := range []string{name, name + CompressedExt} {
		if _, err := os.Stat(filepath.Join(dir, n)); !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	for _, n := range []string{name, name + CompressedExt} {
		err := os.Rename(filepath.Join(dir, RetiredName(n)), filepath.Join(dir, n))
		if err == nil || !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// RemoveRetired deletes the retired file name, in either form.
func RemoveRetired(dir, name string) error {
	for _, n := range []string{name, name + CompressedExt} {
		if err := os.Remove(filepath.Join(dir, RetiredName(n))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// ActiveFirst is the first sequence number of the active file; safe from
// any goroutine.
func (w *Writer) ActiveFirst() uint64 { return w.activeFirst.Load() }

// RetiredBelow is the first sequence number below which every rotated file
// has been retired since the Writer opened (0: none): Retire sets it under
// its lock, also for a file it found missing in both forms. Safe from any
// goroutine.
func (w *Writer) RetiredBelow() uint64 { return w.retiredBelow.Load() }
