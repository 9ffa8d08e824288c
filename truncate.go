package logx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// Explicit truncation. TruncateBefore commits a truncation point to the
// stream's own Raft log; from that position on, every node's retention
// also takes out of the log the rotated files whose every line is below
// it, exactly as MaxFiles and MaxAge take theirs (renamed .retired-<name>,
// deleted at the snapshot after next). The point only rises, is kept in
// the checkpoint and the snapshots, and a node that replays the log
// retires the same files at the same position.
//
// Truncation command wire form: byte cmdTruncate, then the JSON of
// truncateCmd.
const cmdTruncate byte = 20

// maxTruncateCmd bounds a truncation command.
const maxTruncateCmd = 64

type truncateCmd struct {
	Before uint64 `json:"before"`
}

func appendTruncateCmd(dst []byte, before uint64) []byte {
	b, _ := json.Marshal(truncateCmd{Before: before}) // a number always marshals
	return append(append(dst, cmdTruncate), b...)
}

func parseTruncateCmd(b []byte) (uint64, error) {
	if len(b) < 1 || b[0] != cmdTruncate || len(b) > maxTruncateCmd {
		return 0, errors.New("logx: malformed truncation command")
	}
	var c truncateCmd
	if err := json.Unmarshal(b[1:], &c); err != nil || c.Before == 0 {
		return 0, fmt.Errorf("logx: malformed truncation command: %q", b[1:])
	}
	return c.Before, nil
}

// applyTruncate raises the truncation point; retain, which runs after
// every applied batch of Raft entries, retires the files below it.
func (f *fsm) applyTruncate(data []byte) applyResult {
	before, err := parseTruncateCmd(data)
	if err != nil {
		// The leader builds these: a bug or a corrupted log, skipped the
		// same way on every node.
		f.logf("logx: skipping truncation command: %v", err)
		return applyResult{err: err}
	}
	if before > f.st.TruncatedBefore {
		f.st.TruncatedBefore = before
		f.truncated.Store(before)
	}
	return applyResult{}
}

// TruncateBefore takes out of the log, on every node, the rotated files
// whose every line has a sequence number below seq: for users whose log
// feeds a state machine that has taken a checkpoint at seq. It commits the
// truncation point through the stream's leader, and every node retires
// those files at the same position in the log, as retention does (they
// are renamed .retired-<name> and deleted at the snapshot after next,
// Stats.TruncatedBefore says where the point is). Only whole rotated files
// go: the file that holds seq, and the active file, stay. A point below
// the current one changes nothing; one beyond the log's next sequence
// number is refused. It returns once this node applied the point (the
// files themselves go with this node's next applied batch).
//
// It fails while a voter that is up runs a logx older than this feature
// (Stats.Version below 3): that node would keep its files.
func (lx *Stream) TruncateBefore(ctx context.Context, seq uint64) error {
	if seq == 0 {
		return errors.New("logx: TruncateBefore: sequence numbers start at 1")
	}
	return lx.commitHere(ctx, controlRequest{Op: "truncate", Seq: seq}, "the truncation point")
}

// proposeTruncate commits a truncation command on this node, the stream's
// leader, and returns its Raft index.
func (lx *Stream) proposeTruncate(ctx context.Context, seq uint64) (uint64, error) {
	if seq > lx.fsm.seq.Load()+1 {
		// A new leader may not have applied all it committed yet.
		_ = lx.raftCall(func() error { return awaitFuture(ctx, lx.raft.Barrier(lx.cfg.ElectionTimeout)) })
	}
	if next := lx.fsm.seq.Load() + 1; seq > next {
		return 0, fmt.Errorf("logx: truncating before %d: beyond the end of the log (the next sequence number is %d)", seq, next)
	}
	// Non-voters too: they write files.
	return lx.proposeCmd(ctx, appendTruncateCmd(nil, seq), false, clusterCmdsFeature, "truncation", "truncating")
}
