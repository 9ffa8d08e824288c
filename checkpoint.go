package logx

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/logx-dev/logx/internal/store"
)

// What apply has done is checkpointed in the state file (state.json): the
// Raft index and sequence number applied, the files (internal/store's
// State: the first sequence number and size of the active file, the rotated
// files), the producers' last sequence numbers, the log clock, the
// cluster's settings and, on the default stream, the catalog. The files
// are fsynced before the state that describes them is written, so after a
// crash the state never claims bytes the disk lost. On open, store.Open
// cuts off everything past the state (a torn last line included) and undoes
// rotated files made after it; Raft then replays the entries after the
// state's index, which renders the same bytes again.

const stateFile = "state.json"

// applyState is the checkpoint written to state.json.
type applyState struct {
	Index     uint64                    `json:"index"`               // last Raft index applied
	Seq       uint64                    `json:"seq"`                 // last sequence number written
	Producers map[uint64]*producerState `json:"producers"`           // dedup.go
	PrunedAt  int64                     `json:"pruned_at,omitempty"` // log clock of the last pruning

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
	// ReportedAt is the log clock when each voter's latest report was
	// applied, from rules 1 on: a report counts for clockExpiry of it.
	// (Not "clock_seen": versions of 2026-12-06 wrote that key with the
	// leader's time, and their checkpoints may still hold it.)
	ReportedAt map[string]int64 `json:"reported_at,omitempty"`
	// Rules are the apply rules (rules.go), 0 until a rules command.
	Rules int `json:"rules,omitempty"`
	// Settings are the cluster's settings (settings.go), once recorded.
	Settings *clusterSettings `json:"settings,omitempty"`
	// Catalog is the cluster's streams (catalog.go); the default stream's
	// only.
	Catalog map[string]*catalogEntry `json:"catalog,omitempty"`
	// Level is the stream's cluster level (clusterlevel.go), once set.
	Level *slog.Level `json:"level,omitempty"`
	// TruncatedBefore is the truncation point (truncate.go), 0 if none.
	TruncatedBefore uint64 `json:"truncated_before,omitempty"`

	// The files: the active file's first sequence number, size, newest
	// line clock and time range, and the rotated files.
	store.State

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

// retiredFile is a rotated file retention removed from the log at Raft
// index Index.
type retiredFile struct {
	Name  string `json:"name"`
	Index uint64 `json:"index"`
}

// filePolicy is how a node rotates and retains its files and how long it
// remembers producers. Every node of a cluster must use the same.
type filePolicy struct {
	rotation    store.Rotation
	maxFiles    int           // keep at most this many rotated files (0: all)
	maxAge      time.Duration // retire rotated files older than this (0: never)
	dedupWindow time.Duration // forget producers silent this long (0: never)
}

func newApplyState() applyState {
	return applyState{State: store.State{ActiveFirst: 1}, Producers: map[uint64]*producerState{}}
}

// The rotated files' list. A checkpoint is written every
// CheckpointInterval while lines come, and the list only grows with the
// retention (a year of hourly files is 8,760 entries, about 2 MB of JSON):
// so it lives in a file of its own, written only when it changes (a
// rotation, a retirement, a catch-up), and state.json names that file in
// its "rotated" key. The name is the content's hash (.state-rotated-<16
// hex digits>.json; names starting with a dot are logx's in Dir), so a
// list state.json names is never rewritten: a new list is written first,
// then the state.json that names it; the list before the old one is
// removed then (the old one stays until the next change, for copies). A
// state.json whose "rotated" is an array (written before 2026-12-06) is
// read as it is; an earlier version refuses one whose "rotated" is a name
// (a type error: ErrCorrupt), rather than take it for a log without
// rotated files.
const rotatedListPrefix = ".state-rotated-"

// stateOnDisk is applyState as state.json holds it: Rotated, which
// shadows the files' Rotated, is the name of the rotated files' list, or
// (older checkpoints) the list itself.
type stateOnDisk struct {
	applyState
	Rotated json.RawMessage `json:"rotated"`
}

// rotatedList is the list of rotated files a node last wrote, so that
// the next checkpoint writes it again only if it changed, and the one
// before it (kept until the next change).
type rotatedList struct {
	name, prev string
	files      []store.File
}

// readState loads dir/state.json and the rotated files' list it names; ok
// is false when there is none.
func readState(dir string) (st applyState, ok bool, err error) {
	st, ok, _, err = readStateListed(dir)
	return st, ok, err
}

// readStateListed is readState that also returns the name of the rotated
// files' list ("" if state.json holds the list itself).
func readStateListed(dir string) (st applyState, ok bool, list string, err error) {
	// A reader beside the node (Grep) may read a state.json whose list
	// the node has just replaced: the next state.json names the new one.
	for range 3 {
		st, ok, list, err = readStateOnce(dir)
		if err == nil || list == "" || !errors.Is(err, os.ErrNotExist) {
			return st, ok, list, err
		}
	}
	return st, ok, list, fmt.Errorf("%w: %s: %v", ErrCorrupt, stateFile, err)
}

// readStateOnce is readState without the retry; list is the name of the
// rotated files' list state.json gave, if any.
func readStateOnce(dir string) (st applyState, ok bool, list string, err error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return newApplyState(), false, "", nil
	}
	if err != nil {
		return st, false, "", err
	}
	disk := stateOnDisk{applyState: newApplyState()}
	if err := json.Unmarshal(b, &disk); err != nil {
		return st, false, "", fmt.Errorf("%w: %s: %v", ErrCorrupt, stateFile, err)
	}
	st = disk.applyState
	if st.Producers == nil {
		st.Producers = map[uint64]*producerState{}
	}
	switch raw := disk.Rotated; {
	case len(raw) == 0 || string(raw) == "null":
	case raw[0] == '"':
		if err := json.Unmarshal(raw, &list); err != nil || !isRotatedList(list) {
			return st, false, "", fmt.Errorf("%w: %s names the rotated files' list %s", ErrCorrupt, stateFile, raw)
		}
		lb, err := os.ReadFile(filepath.Join(dir, list))
		if err != nil {
			return st, false, list, err // not found: see readState
		}
		if err := json.Unmarshal(lb, &st.Rotated); err != nil {
			return st, false, list, fmt.Errorf("%w: %s: %v", ErrCorrupt, list, err)
		}
	default: // the list itself, as before 2026-12-06
		if err := json.Unmarshal(raw, &st.Rotated); err != nil {
			return st, false, "", fmt.Errorf("%w: %s: %v", ErrCorrupt, stateFile, err)
		}
	}
	return st, true, list, nil
}

// isRotatedList reports whether name is of the rotated files' list's form.
func isRotatedList(name string) bool {
	hexPart, ok := strings.CutSuffix(strings.TrimPrefix(name, rotatedListPrefix), ".json")
	if !ok || len(hexPart) != 16 || !strings.HasPrefix(name, rotatedListPrefix) {
		return false
	}
	_, err := hex.DecodeString(hexPart)
	return err == nil
}

// writeState replaces dir/state.json atomically and durably, and the
// rotated files' list it names if that changed since last (nil: not
// known, the list is written). last changes only once state.json names
// the new list: a failed write leaves it naming what state.json names.
// The list before last stays too, so that a copy of Dir taken while the
// node runs, state.json first, finds the list it names (deploy.md).
func writeState(dir string, st *applyState, last *rotatedList) error {
	if last == nil {
		last = &rotatedList{}
	}
	name := last.name
	if name == "" || !slices.Equal(last.files, st.Rotated) {
		lb, err := json.Marshal(st.Rotated)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(lb)
		name = rotatedListPrefix + hex.EncodeToString(sum[:8]) + ".json"
		if name != last.name {
			if err := store.WriteFileAtomic(filepath.Join(dir, name), lb); err != nil {
				return err
			}
		}
	}
	ref, err := json.Marshal(name)
	if err != nil {
		return err
	}
	b, err := json.Marshal(stateOnDisk{applyState: *st, Rotated: ref})
	if err != nil {
		return err
	}
	if err := store.WriteFileAtomic(filepath.Join(dir, stateFile), b); err != nil {
		return err
	}
	if name != last.name {
		if last.prev != "" && last.prev != name {
			if err := os.Remove(filepath.Join(dir, last.prev)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		last.prev, last.name, last.files = last.name, name, slices.Clone(st.Rotated)
	}
	return nil
}

// removeStaleLists removes the rotated files' lists in dir other than keep
// (a crash between writing a list and the state that names it, or before
// the old list was removed) and their temporary files.
func removeStaleLists(dir, keep string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := e.Name()
		if name == keep || !isRotatedList(strings.TrimSuffix(name, ".tmp")) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// persist fsyncs the files and checkpoints the state. Called on the apply
// goroutine (or after it has stopped).
func (f *fsm) persist() error {
	if f.failed != nil {
		return f.failed
	}
	if f.dirty {
		return errors.New("logx: the files hold a half-written batch; not checkpointing them")
	}
	if f.seg == nil {
		return errors.New("logx: files are being caught up")
	}
	if err := f.seg.Flush(); err != nil {
		return err
	}
	if err := f.seg.Sync(); err != nil {
		return err
	}
	f.st.State = f.seg.State(f.st.Seq + 1)
	if err := writeState(f.dir, &f.st, &f.lists); err != nil {
		return err
	}
	f.lastPersist = time.Now()
	f.noteRotated(f.st.Rotated)
	return nil
}

// noteRotated records rot, the rotated files of the checkpoint just
// written (or read at start), as checkpointed when they changed, and tells
// onRotated when its newest file is not the one the last list had.
func (f *fsm) noteRotated(rot []store.File) {
	newest := func(fs []store.File) uint64 {
		if len(fs) == 0 {
			return 0
		}
		return fs[len(fs)-1].First
	}
	old := f.checkpointed.Load()
	if old != nil && len(*old) == len(rot) && newest(*old) == newest(rot) {
		return
	}
	c := slices.Clone(rot)
	f.checkpointed.Store(&c)
	if f.onRotated != nil && len(rot) > 0 && (old == nil || newest(*old) != newest(rot)) {
		f.onRotated()
	}
}
