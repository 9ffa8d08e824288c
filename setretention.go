package logx

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Changing the retention of a running cluster. MaxFiles and MaxAge are
// cluster settings (settings.go): every node must retire the same files
// at the same position in the log, so a node's Config cannot change them
// on its own, and a cluster started without retention kept everything
// until its disks filled. SetRetention commits a retention command to the
// stream's Raft log; every node applies it at the same position, retires
// what the new limits say at once, and records them in the cluster's
// settings (checkpoints and snapshots) with RetentionSet. The cluster's
// MaxFiles and MaxAge win over a node's Config whether a retention command
// set them or not (which a node logs).
//
// Retention command wire form: byte cmdRetention, then the JSON of
// retentionCmd.
const cmdRetention byte = 21

// maxRetentionCmd bounds a retention command.
const maxRetentionCmd = 256

// retentionFeature is the FeatureVersion that knows retention commands: a
// node of an earlier version skips them and would keep the files the
// others retire, so the command is refused while a member that is up is
// older (as truncation is).
const retentionFeature = 5

// loggedMaxAge is a MaxAge read from the log, as its checks see it: one
// under clockSlack, which a Config of an earlier version could record
// (Validate refuses it now), is taken as the log holds it, and checked as
// clockSlack, so that every node still reads the same settings.
func loggedMaxAge(d time.Duration) time.Duration {
	if shortMaxAge(d) {
		return clockSlack
	}
	return d
}

// shortMaxAge reports whether d is a MaxAge under clockSlack, which Config
// and SetRetention refuse: a line's clock may be clockSlack from the log
// clock, so a shorter MaxAge could retire a file as it rotates.
func shortMaxAge(d time.Duration) bool { return d > 0 && d < clockSlack }

// retentionCmd is a retention command's body: MaxFiles and MaxAge as in
// Config, 0 for no limit.
type retentionCmd struct {
	MaxFiles int           `json:"max_files"`
	MaxAge   time.Duration `json:"max_age"`
}

// check refuses limits a Config could not hold.
func (c retentionCmd) check() error {
	switch {
	case c.MaxFiles < 0 || c.MaxFiles > maxQueue:
		return fmt.Errorf("logx: MaxFiles %d is outside 0 to %d", c.MaxFiles, maxQueue)
	case c.MaxAge < 0:
		return fmt.Errorf("logx: MaxAge %v is negative", c.MaxAge)
	case shortMaxAge(c.MaxAge):
		// A line's clock may be clockSlack from the log clock: a shorter
		// MaxAge could retire the file being written next.
		return fmt.Errorf("logx: MaxAge %v is less than %v", c.MaxAge, clockSlack)
	}
	return nil
}

func appendRetentionCmd(dst []byte, c retentionCmd) []byte {
	b, _ := json.Marshal(c) // plain fields
	return append(append(dst, cmdRetention), b...)
}

func parseRetentionCmd(b []byte) (retentionCmd, error) {
	var c retentionCmd
	if len(b) < 1 || b[0] != cmdRetention || len(b) > maxRetentionCmd {
		return c, errors.New("logx: malformed retention command")
	}
	if err := json.Unmarshal(b[1:], &c); err != nil {
		return c, fmt.Errorf("logx: malformed retention command: %v", err)
	}
	return c, c.check()
}

// applyRetention applies a retention command: the cluster's settings take
// its limits, and apply's retention (fsm.retain, after this batch) goes by
// them. Refused, on every node alike, before the settings are recorded.
func (f *fsm) applyRetention(data []byte) applyResult {
	c, err := parseRetentionCmd(data)
	if err != nil {
		f.logf("logx: skipping retention command: %v", err)
		return applyResult{err: err}
	}
	if f.st.Settings == nil {
		return applyResult{err: &refusedError{msg: "retention command before the cluster's settings are recorded"}}
	}
	s := *f.st.Settings
	s.MaxFiles, s.MaxAge, s.RetentionSet = c.MaxFiles, c.MaxAge, true
	f.st.Settings = &s
	f.policy = s.policy()
	f.settings.Store(&s)
	return applyResult{}
}

// SetRetention sets the stream's retention on every node of the cluster,
// as Config's MaxFiles and MaxAge (0: no limit): it commits the change
// through the stream's Raft leader, every node applies it at the same
// position in the log and retires at once the rotated files the new limits
// leave out (deleted at the snapshot after next, as retention's are), and
// it survives restarts: from then on the cluster's limits win over a
// node's Config. It returns once this node applied it.
//
// It fails while a member that is up runs a logx older than this feature
// (Stats.Version below 5): that node would keep the files the others
// retire.
func (lx *Stream) SetRetention(ctx context.Context, maxFiles int, maxAge time.Duration) error {
	c := retentionCmd{MaxFiles: maxFiles, MaxAge: maxAge}
	if err := c.check(); err != nil {
		return err
	}
	return lx.commitHere(ctx, controlRequest{Op: "set-retention", Retention: &c}, "the retention")
}

// SetRetention sets the retention of stream (Stream.SetRetention) through
// the node at addr, as SetClusterLevel does.
func SetRetention(ctx context.Context, addr, stream string, maxFiles int, maxAge time.Duration, tlsConfig *tls.Config) error {
	c := retentionCmd{MaxFiles: maxFiles, MaxAge: maxAge}
	if err := c.check(); err != nil {
		return err
	}
	return changeVia(ctx, addr, stream, controlRequest{Op: "set-retention", Retention: &c}, tlsConfig)
}

// proposeRetention commits a retention command on this node, the stream's
// leader, once every member that is up knows such commands.
func (lx *Stream) proposeRetention(ctx context.Context, c retentionCmd) (uint64, error) {
	return lx.proposeCmd(ctx, appendRetentionCmd(nil, c), false, retentionFeature, "retention commands", "setting the retention")
}
