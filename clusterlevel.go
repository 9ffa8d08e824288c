package logx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
)

// The cluster-wide level. SetClusterLevel commits a level command to the
// stream's own Raft log, so every node applies it at the same position in
// the log; the state machine keeps the last one in its checkpoint
// (state.json) and in its snapshots, so it survives restarts and reaches a
// node that catches up from a snapshot. Applying it sets the stream's
// level on that node, as SetLevel would; SetLevel stays node-local and
// holds until the next level command is applied there, and a node that
// starts takes the cluster level over Config.Level once one was set.
//
// Level command wire form: byte cmdLevel, then the JSON of levelCmd.
const cmdLevel byte = 19

// maxLevelCmd bounds a level command.
const maxLevelCmd = 128

// levelCmd is a level command's body. slog.Level is written as its name
// ("WARN", "DEBUG-2").
type levelCmd struct {
	Level slog.Level `json:"level"`
}

func appendLevelCmd(dst []byte, l slog.Level) []byte {
	b, _ := json.Marshal(levelCmd{Level: l}) // a Level always marshals
	return append(append(dst, cmdLevel), b...)
}

func parseLevelCmd(b []byte) (slog.Level, error) {
	if len(b) < 1 || b[0] != cmdLevel || len(b) > maxLevelCmd {
		return 0, errors.New("logx: malformed level command")
	}
	var c levelCmd
	if err := json.Unmarshal(b[1:], &c); err != nil {
		return 0, fmt.Errorf("logx: malformed level command: %v", err)
	}
	return c.Level, nil
}

// applyLevel applies the level command at Raft index idx: the stream's
// level on this node, from this position in the log on. A command applied
// again (a redo after a write error goes over the entries since the
// checkpoint once more) records the level but leaves the node's level
// alone, so that a SetLevel made since holds.
func (f *fsm) applyLevel(idx uint64, data []byte) applyResult {
	l, err := parseLevelCmd(data)
	if err != nil {
		// The leader builds these, so this is a bug or a corrupted log;
		// every node skips it the same way.
		f.logf("logx: skipping level command: %v", err)
		return applyResult{err: err}
	}
	f.st.Level = &l
	f.level.Store(&l)
	if idx > f.levelIndex {
		f.levelIndex = idx
		if f.onLevel != nil {
			f.onLevel(l)
		}
	}
	return applyResult{}
}

// restoredLevel takes the cluster level of a snapshot a catch-up
// installed at Raft index idx: the node's level changes only if the
// snapshot's differs from the one applied last.
func (f *fsm) restoredLevel(idx uint64, l *slog.Level) {
	if l == nil {
		return
	}
	cur := f.level.Load()
	f.level.Store(l)
	if idx > f.levelIndex && (cur == nil || *cur != *l) {
		f.levelIndex = idx
		if f.onLevel != nil {
			f.onLevel(*l)
		}
	}
}

// clusterLevel returns the cluster level as applied, if one was set.
func (f *fsm) clusterLevel() (slog.Level, bool) {
	if l := f.level.Load(); l != nil {
		return *l, true
	}
	return 0, false
}

// clusterCmdsFeature is the FeatureVersion that knows level and
// truncation commands. A node of an earlier version skips them (and logs
// that it did): after a level command its files stay identical and only
// its level does not follow; after a truncation it would keep files the
// others retire.
const clusterCmdsFeature = 3

// SetClusterLevel sets the stream's minimum level on every node of the
// cluster: it commits the change through the stream's Raft leader (this
// node, or the one this node asks), every node applies it at the same
// position in the log, and it survives restarts. It returns once this node
// applied it. A node's SetLevel is local and holds only until the next
// cluster level reaches that node; a node that starts takes the cluster
// level, once one was set, over its Config.Level. The level filters calls
// where they are made: entries already queued when it changes are logged.
//
// It fails while a voter that is up runs a logx older than this feature
// (Stats.Version below 3): that node would skip the change.
func (lx *Stream) SetClusterLevel(ctx context.Context, level slog.Level) error {
	if err := checkClusterLevel(level); err != nil {
		return err
	}
	return lx.commitHere(ctx, controlRequest{Op: "set-level", Level: &level}, "the cluster level")
}

// commitHere has the stream's leader commit req (a level or truncation
// command) and waits until this node applied it, so that what this node
// reports says what was set. The change is committed whatever the wait
// returns; what names it in that error.
func (lx *Stream) commitHere(ctx context.Context, req controlRequest, what string) error {
	resp, err := lx.controlResp(ctx, req)
	if err != nil {
		return err
	}
	if err := lx.waitAppliedHere(ctx, resp.Index, lx.closingCtx); err != nil {
		return fmt.Errorf("logx: %s is set, but this node has not applied it: %w", what, err)
	}
	return nil
}

// proposeCmd commits cmd, a level or truncation command, on this node, the
// stream's leader, once every member that is up knows such commands
// (every server, or the voters only); it returns the command's Raft
// index. what names the feature, doing the change, in errors.
func (lx *Stream) proposeCmd(ctx context.Context, cmd []byte, votersOnly bool, feature int, what, doing string) (uint64, error) {
	servers, err := lx.serverAddrs(votersOnly)
	if err != nil {
		return 0, err
	}
	if err := lx.votersKnow(servers, feature, what); err != nil {
		return 0, fmt.Errorf("logx: not %s: %w", doing, err)
	}
	if err := ctx.Err(); err != nil {
		// The asker gave up while the voters were asked (one after
		// another, each up to ForwardTimeout): it was told the change
		// failed, or may have, so it is not made behind its back.
		return 0, fmt.Errorf("logx: not %s: %w", doing, err)
	}
	idx, _, err := lx.applyLocalUntil(ctx, cmd, nil)
	return idx, err
}

// checkClusterLevel refuses a cluster level above LevelError: errors are
// always logged, so that no caller, and no peer holding a certificate,
// can silence a whole cluster (a node's own SetLevel may go higher).
func checkClusterLevel(l slog.Level) error {
	if l > LevelError {
		return fmt.Errorf("logx: a cluster level above ERROR (%v) would silence errors on every node", l)
	}
	return nil
}

// ClusterLevel returns the stream's cluster level as this node last
// applied it, and false if none was ever set.
func (lx *Stream) ClusterLevel() (slog.Level, bool) {
	return lx.fsm.clusterLevel()
}

// proposeLevel commits a level command on this node, the stream's leader,
// once every voter that is up knows level commands; it returns the
// command's Raft index.
func (lx *Stream) proposeLevel(ctx context.Context, l slog.Level) (uint64, error) {
	return lx.proposeCmd(ctx, appendLevelCmd(nil, l), true, clusterCmdsFeature, "level commands", "setting the cluster level")
}
