package logx

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Segment files. The active file has the configured name (app.log); when the
// next line would take it past MaxSize it is renamed to
// <stem>-<first sequence number, 20 digits><ext> (app-00000000000000000001.log)
// and a new active file is started. Sizes and sequence numbers come from the
// log, so every node rotates at the same line and picks the same names.
//
// What apply has done is checkpointed in the state file (state.json): the
// Raft index and sequence number applied, the first sequence number and size
// of the active file, and the producers' last sequence numbers. The files are
// fsynced before the state that describes them is written, so after a crash
// the state never claims bytes the disk lost. On open, everything past the
// state is cut off (a torn last line included) and rotated files made after it
// are undone; Raft then replays the entries after the state's index, which
// renders the same bytes again.

const stateFile = "state.json"

// applyState is the checkpoint written to state.json.
type applyState struct {
	Index       uint64                    `json:"index"`               // last Raft index applied
	Seq         uint64                    `json:"seq"`                 // last sequence number written
	ActiveFirst uint64                    `json:"active_first"`        // first sequence number of the active file
	ActiveSize  int64                     `json:"active_size"`         // bytes of the active file covered
	Producers   map[uint64]*producerState `json:"producers"`           // dedup.go
	PrunedAt    int64                     `json:"pruned_at,omitempty"` // log clock of the last pruning
	Rotated     []fileState               `json:"rotated"`             // rotated files, oldest first

	// The log clock (clock.go), Unix nanoseconds: the voters of the
	// configuration in effect, their latest clock reports, and the time a
	// majority of them reached. ActiveNewest is the newest line clock of
	// the active file; rotation by time and retention by age go by these.
	Clock  int64            `json:"clock,omitempty"`
	Clocks map[string]int64 `json:"clocks,omitempty"`
	Voters []string         `json:"voters,omitempty"`
	// ClockOwners are the certificate subjects (hex) each voter's clock
	// reports came from; "" without TLS.
	ClockOwners map[string]string `json:"clock_owners,omitempty"`
	// Settings are the cluster's settings (settings.go), once recorded.
	Settings *clusterSettings `json:"settings,omitempty"`
	// Catalog is the cluster's streams (catalog.go); the default stream's
	// only.
	Catalog      map[string]*catalogEntry `json:"catalog,omitempty"`
	ActiveNewest int64                    `json:"active_newest,omitempty"`
	// The time range of the active file's lines (see fileState.MinTime);
	// both 0 when not known.
	ActiveMinTime int64 `json:"active_min_time,omitempty"`
	ActiveMaxTime int64 `json:"active_max_time,omitempty"`

	// Retired lists files that retention took out of the log, renamed to
	// .retired-<name> until they are deleted (see fsm.retain); SnapIndex is
	// the Raft index of the last snapshot this node took.
	Retired   []retiredFile `json:"retired,omitempty"`
	SnapIndex uint64        `json:"snap_index,omitempty"`

	// CatchingUp is set while files are being copied from a peer (catchup.go):
	// they are then not a prefix of the log the rest of the state describes,
	// and only finishing the copy makes them consistent again.
	CatchingUp bool `json:"catching_up,omitempty"`
}

// fileState describes a log file: its first sequence number, size and the
// sha256 of its bytes.
type fileState struct {
	Name   string `json:"name"`
	First  uint64 `json:"first"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	Newest int64  `json:"newest,omitempty"` // line clock of its newest line (clock.go); 0: none

	// MinTime and MaxTime are the earliest and latest time of its lines
	// as their heads show them (lineTime; a line without a time counts
	// as 0), recorded as they are written; Grep skips files whose range
	// lies outside a query's. Lines are not in time order (entry times
	// are the callers' clocks), so only the whole range says which times
	// a file holds. Both 0: not recorded.
	MinTime int64 `json:"min_time,omitempty"`
	MaxTime int64 `json:"max_time,omitempty"`
}

// lineTime is the time a line's head shows for an entry whose record says
// unixNano (the time its body was rendered with), in Unix nanoseconds: the
// head shows microseconds, cut down. An entry without a time (0) stays 0:
// counting it in a range only widens the range.
func lineTime(unixNano int64) int64 {
	r := unixNano % 1000
	if r < 0 {
		r += 1000
	}
	if unixNano < math.MinInt64+r {
		return math.MinInt64
	}
	return unixNano - r
}

// retiredFile is a rotated file retention removed from the log at Raft
// index Index.
type retiredFile struct {
	Name  string `json:"name"`
	Index uint64 `json:"index"`
}

// retiredName is the name a retired file waits under until it is deleted.
func retiredName(name string) string { return ".retired-" + name }

// filePolicy is how a node rotates and retains its files and how long it
// remembers producers. Every node of a cluster must use the same.
type filePolicy struct {
	maxSize     int64         // rotate when a line would take the file past this
	every       time.Duration // rotate when a line's clock enters a new period (0: never)
	maxFiles    int           // keep at most this many rotated files (0: all)
	maxAge      time.Duration // retire rotated files older than this (0: never)
	dedupWindow time.Duration // forget producers silent this long (0: never)
}

func newApplyState() applyState {
	return applyState{ActiveFirst: 1, Producers: map[uint64]*producerState{}}
}

// fileNames derives a log's file names from its active file's name:
// rotated files are <stem>-<first sequence number, 20 digits><ext>.
type fileNames struct {
	name string // the active file
	stem string // name without extension
	ext  string
}

func newFileNames(name string) fileNames {
	ext := filepath.Ext(name)
	return fileNames{name: name, stem: strings.TrimSuffix(name, ext), ext: ext}
}

// segmentWriter appends lines to the active file and rotates it.
type segmentWriter struct {
	fileNames
	dir    string
	policy filePolicy

	f       *os.File
	first   uint64 // first sequence number of the active file
	size    int64
	newest  int64        // entry clock of the active file's newest line
	buf     []byte       // lines not yet written
	fault   func() error // test hook: fsm.fault
	hash    hash.Hash    // sha256 of the active file's bytes
	rotated []fileState  // rotated files, oldest first

	// minTime and maxTime are the range of the active file's line times
	// (lineTime); timesKnown is false while it holds lines from before a
	// restart whose range the checkpoint did not record.
	minTime, maxTime int64
	timesKnown       bool

	rotations   uint64
	activeFirst atomic.Uint64 // first, for readers on other goroutines

	// synced, if set, is told of the active file's durable size (hooks.go).
	synced func(path string, size int64)
}

// segmentName is the name of the rotated file whose first line has sequence
// number first.
func (w fileNames) segmentName(first uint64) string {
	return fmt.Sprintf("%s-%020d%s", w.stem, first, w.ext)
}

// parseSegmentName returns the first sequence number of a rotated file name.
func (w fileNames) parseSegmentName(name string) (uint64, bool) {
	if !strings.HasPrefix(name, w.stem+"-") || !strings.HasSuffix(name, w.ext) {
		return 0, false
	}
	digits := name[len(w.stem)+1 : len(name)-len(w.ext)]
	if len(digits) != 20 {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	return n, err == nil
}

// LogFiles returns the names of the log files in dir for the active file
// name, rotated files first in log order and the active file last.
func LogFiles(dir, name string) ([]string, error) {
	w := newFileNames(name)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var rotated []string
	active := false
	for _, e := range ents {
		if e.Name() == name {
			active = true
		} else if _, ok := w.parseSegmentName(e.Name()); ok {
			rotated = append(rotated, e.Name())
		}
	}
	sort.Strings(rotated)
	if active {
		rotated = append(rotated, name)
	}
	return rotated, nil
}

// openSegments recovers the files of dir to the checkpoint st and opens the
// active file for appending.
func openSegments(dir, name string, policy filePolicy, st applyState, haveState bool) (*segmentWriter, error) {
	w := &segmentWriter{fileNames: newFileNames(name), dir: dir, policy: policy, first: st.ActiveFirst, size: st.ActiveSize,
		newest: st.ActiveNewest, hash: sha256.New(), rotated: slices.Clone(st.Rotated),
		minTime: st.ActiveMinTime, maxTime: st.ActiveMaxTime, timesKnown: st.ActiveMinTime != 0 || st.ActiveMaxTime != 0}
	w.activeFirst.Store(w.first)
	active := filepath.Join(dir, name)

	// Files the checkpoint still lists that retention retired after it:
	// put them back; Raft's replay retires them again.
	for _, fs := range st.Rotated {
		path := filepath.Join(dir, fs.Name)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			err := os.Rename(filepath.Join(dir, retiredName(fs.Name)), path)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, err
			}
		}
	}

	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	activeSeg := ""
	for _, e := range ents {
		name := e.Name()
		first, ok := w.parseSegmentName(name)
		if rest, retired := strings.CutPrefix(name, retiredName("")); retired {
			// Retired after the checkpoint: undo like a rotation, since
			// Raft's replay rotates and retires it again.
			if first, ok = w.parseSegmentName(rest); !ok || first < st.ActiveFirst {
				continue
			}
			if err := os.Rename(filepath.Join(dir, name), filepath.Join(dir, rest)); err != nil {
				return nil, err
			}
			name = rest
		}
		if !ok {
			continue
		}
		if !haveState {
			return nil, fmt.Errorf("%w: %s exists but %s does not", ErrCorrupt, name, stateFile)
		}
		switch {
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
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if fi.Size() > 0 && !haveState {
		f.Close()
		return nil, fmt.Errorf("%w: %s holds %d bytes but %s is missing", ErrCorrupt, active, fi.Size(), stateFile)
	}
	if fi.Size() < st.ActiveSize {
		f.Close()
		return nil, fmt.Errorf("%w: %s has %d bytes, the checkpoint says %d", ErrCorrupt, active, fi.Size(), st.ActiveSize)
	}
	if fi.Size() > st.ActiveSize {
		// Lines applied after the checkpoint, possibly torn: Raft replays them.
		if err := f.Truncate(st.ActiveSize); err != nil {
			f.Close()
			return nil, err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, err
		}
	}
	// Resume the active file's checksum.
	if _, err := io.Copy(w.hash, io.NewSectionReader(f, 0, st.ActiveSize)); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(st.ActiveSize, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	if err := syncDir(dir); err != nil {
		f.Close()
		return nil, err
	}
	w.f = f
	return w, nil
}

// add buffers one line whose sequence number is seq, entry clock clock and
// record time unixNano (what its head shows; 0: none), rotating first when
// the line would take the active file past the maximum size, or when its
// clock is in a later period than the file's newest line.
func (w *segmentWriter) add(seq uint64, line []byte, clock, unixNano int64) error {
	if w.size > 0 && (w.size+int64(len(line)) > w.policy.maxSize || w.newPeriod(clock)) {
		if err := w.rotate(seq); err != nil {
			return err
		}
	}
	if w.size == 0 {
		w.first = seq
		w.activeFirst.Store(seq)
		w.newest = 0
		w.minTime, w.maxTime, w.timesKnown = math.MaxInt64, math.MinInt64, true
	}
	w.newest = max(w.newest, clock)
	t := lineTime(unixNano)
	w.minTime, w.maxTime = min(w.minTime, t), max(w.maxTime, t)
	w.buf = append(w.buf, line...)
	w.size += int64(len(line))
	if len(w.buf) >= segmentBufSize {
		return w.flush()
	}
	return nil
}

// segmentBufSize is how many bytes of lines add gathers before it writes
// them. Raft hands apply many batches at once; writing as they come keeps
// the buffer small, where one write per call would grow it to all of them.
const segmentBufSize = 256 << 10

// newPeriod reports whether clock falls in a later rotation period than the
// active file's newest line. Periods are multiples of the interval counted
// from the Unix epoch, so hourly and daily files start on the hour and at
// midnight UTC. Lines without a clock (0) never rotate, and a file none of
// whose lines has one is not rotated by time.
func (w *segmentWriter) newPeriod(clock int64) bool {
	every := int64(w.policy.every)
	return every > 0 && clock > 0 && w.newest > 0 && clock/every > w.newest/every
}

// flush writes the buffered lines.
func (w *segmentWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	if w.fault != nil {
		if err := w.fault(); err != nil {
			_, _ = w.f.Write(w.buf[:len(w.buf)/2]) // as a full disk does: part of it
			return err
		}
	}
	_, err := w.f.Write(w.buf)
	w.hash.Write(w.buf)
	w.buf = w.buf[:0]
	return err
}

// active describes the active file as written so far (after flush).
func (w *segmentWriter) active() fileState {
	fs := fileState{Name: w.name, First: w.first, Size: w.size, SHA256: hex.EncodeToString(w.hash.Sum(nil)), Newest: w.newest}
	fs.MinTime, fs.MaxTime = w.timeRange()
	return fs
}

// timeRange is the range of the active file's line times, or 0, 0 when it
// is empty or not known.
func (w *segmentWriter) timeRange() (int64, int64) {
	if w.size == 0 || !w.timesKnown {
		return 0, 0
	}
	return w.minTime, w.maxTime
}

// rotate closes the active file under its rotated name and starts a new one
// whose first line will be next.
func (w *segmentWriter) rotate(next uint64) error {
	if err := w.flush(); err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		return err
	}
	if err := w.f.Close(); err != nil {
		return err
	}
	active := filepath.Join(w.dir, w.name)
	done := w.active()
	done.Name = w.segmentName(w.first)
	if err := os.Rename(active, filepath.Join(w.dir, done.Name)); err != nil {
		return err
	}
	w.rotated = append(w.rotated, done)
	f, err := os.OpenFile(active, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	w.f = f
	if w.synced != nil {
		w.synced(active, 0)
	}
	w.first = next
	w.activeFirst.Store(next)
	w.size = 0
	w.newest = 0
	w.hash.Reset()
	w.rotations++
	return syncDir(w.dir)
}

func (w *segmentWriter) sync() error {
	if w.fault != nil {
		if err := w.fault(); err != nil {
			return err
		}
	}
	return w.f.Sync()
}

func (w *segmentWriter) close() error {
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// readState loads dir/state.json; ok is false when there is none.
func readState(dir string) (st applyState, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return newApplyState(), false, nil
	}
	if err != nil {
		return st, false, err
	}
	st = newApplyState()
	if err := json.Unmarshal(b, &st); err != nil {
		return st, false, fmt.Errorf("%w: %s: %v", ErrCorrupt, stateFile, err)
	}
	if st.Producers == nil {
		st.Producers = map[uint64]*producerState{}
	}
	return st, true, nil
}

// writeState replaces dir/state.json atomically and durably.
func writeState(dir string, st *applyState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, stateFile), b)
}

// writeFileAtomic writes b to a temporary file, fsyncs it and renames it
// over path, then fsyncs the directory.
func writeFileAtomic(path string, b []byte) error {
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
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
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
