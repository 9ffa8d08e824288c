package logx

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
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
	// ClockSeen is when each voter's bound owner last reported, by the
	// leader's clock (Unix nanoseconds; applyClock).
	ClockSeen map[string]int64 `json:"clock_seen,omitempty"`
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
	return store.WriteFileAtomic(filepath.Join(dir, stateFile), b)
}
