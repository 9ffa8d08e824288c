package logx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
)

// Watch calls fn for every line of this node's log from sequence number from
// on (0: the oldest line still held), in order, first replaying what the
// files hold and then each line as it is written, until ctx ends (Watch then
// returns ctx's error), fn returns an error (returned), or the node closes
// (ErrClosed). Lines below level are skipped (nil: all levels).
//
// A watcher reads the files on its own, so however slow fn is, it never
// holds up the log: it just falls behind and catches up from the files.
// If lines it asked for are no longer in the files (retention removed
// them, before it started or while it lagged), Watch returns an error that
// wraps ErrRetained and names the gap; a caller may resume from the next
// line it reports.
//
// On a follower a line arrives with the next Raft round; when traffic stops,
// 0.1 to 0.2 s and a Raft round after the leader committed it (up to 0.5 s
// for a trickle of lines), when the leader passes its commit index on
// (commit.go).
func (lx *Stream) Watch(ctx context.Context, from uint64, level slog.Leveler, fn func(Line) error) error {
	r, err := OpenReader(lx.cfg.Dir, lx.logFile())
	if err != nil {
		return err
	}
	defer r.Close()
	if err := r.SeekSeq(from); err != nil {
		return err
	}
	next := from // the sequence number expected next; 0: any
	for {
		// Take the notification channel before reading, so that a line
		// written after the read wakes the wait below.
		changed := lx.fsm.changed()
		for n := 0; ; n++ {
			if n%1024 == 1023 { // a replay of many lines stops soon too
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if lx.closingCtx.Err() != nil {
					return ErrClosed
				}
			}
			l, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if errors.Is(err, ErrBadLine) {
				// Damage (the active file has no checksum until it
				// rotates; Grep skips it too). Returning the error would
				// stop a watcher at it for good, however it resumed. How
				// many lines it took is not known (damage may add or
				// remove newlines): the next line that parses says.
				lx.logf("logx: watch: skipping a line that does not parse (%v)", err)
				continue
			}
			if err != nil {
				return err
			}
			if next > 0 && l.Seq > next {
				// Retention and truncation take whole files: a gap within
				// a file is damage (lines that do not parse, or merged
				// with the line before), one at a file's first line is
				// theirs.
				if l.Seq == r.cur.first {
					return fmt.Errorf("%w: lines %d to %d were removed before this watcher read them", ErrRetained, next, l.Seq-1)
				}
				lx.logf("logx: watch: lines %d to %d are damaged on this node", next, l.Seq-1)
			}
			if l.Seq < next {
				continue // from was past this node's end: lines below it arrive first
			}
			next = l.Seq + 1
			if level != nil && l.Level < level.Level() {
				continue
			}
			if err := fn(l); err != nil {
				return err
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-lx.closing:
			return ErrClosed
		}
	}
}
