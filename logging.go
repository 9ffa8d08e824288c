package logx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/logx-dev/logx/internal/wire"
)

// The logging calls: leveled calls and LogAttrs queue an entry, Append
// waits for its commit, Flush for everything queued before it. The queue's
// other end is the producer (producer.go).

// entry is one queued call: a log entry, or a Flush marker.
type entry struct {
	level slog.Level
	nanos int64
	body  []byte
	w     *waiter   // Append's; nil for fire-and-forget calls
	flush *flushReq // set for a Flush marker
	// group, on the first entry of an AppendBatch, holds the others: they
	// go in the same batch (one Raft entry), in order, or not at all.
	// member marks those others once the producer has laid them out.
	group  []*entry
	member bool
	// own marks logx's own entry (a sampling summary): its loss is not a
	// caller's that Flush reports.
	own bool
}

// waiter is how Append learns its entry's fate.
type waiter struct {
	state atomic.Int32 // waitPending, waitSent or waitCancelled
	done  chan struct{}
	seq   uint64
	err   error
	epoch uint64 // the producer's release count when the entry was made (producer.go)
}

const (
	waitPending   int32 = iota // queued, or batched but not yet sent: withdrawable
	waitSent                   // claimed for sending: its outcome is the batch's
	waitCancelled              // withdrawn by Append's context
)

type flushReq struct {
	done chan struct{}
	idx  uint64 // Raft index of the last batch committed before the marker
	err  error
	lost lossCount // losses when the producer reached the marker
}

// SetLevel sets the minimum level logged.
func (lx *Stream) SetLevel(l slog.Level) { lx.level.Set(l) }

// Level returns the minimum level logged.
func (lx *Stream) Level() slog.Level { return lx.level.Level() }

// Enabled reports whether entries at level l are logged.
func (lx *Stream) Enabled(l slog.Level) bool { return l >= lx.level.Level() }

// Debug logs at LevelDebug; see Info.
func (lx *Stream) Debug(msg string, args ...any) { lx.logAsync(LevelDebug, msg, args) }

// Info logs msg with attributes given as alternating keys and values, or as
// slog.Attr, like slog.Logger.Info. The entry is queued and committed in the
// background; Flush waits for it. When the queue is full Info blocks, or
// drops the entry if Config.DropWhenFull is set.
func (lx *Stream) Info(msg string, args ...any) { lx.logAsync(LevelInfo, msg, args) }

// Warn logs at LevelWarn; see Info.
func (lx *Stream) Warn(msg string, args ...any) { lx.logAsync(LevelWarn, msg, args) }

// Error logs at LevelError; see Info.
func (lx *Stream) Error(msg string, args ...any) { lx.logAsync(LevelError, msg, args) }

func (lx *Stream) logAsync(level slog.Level, msg string, args []any) {
	if !lx.Enabled(level) {
		return
	}
	t := lx.now()
	if s := lx.sampler; s != nil && !s.allow(level, msg, t.UnixNano()) {
		return
	}
	lx.noteAsync(lx.logAt(t, level, callerPC(3), msg, args, !lx.cfg.DropWhenFull, false))
}

// logAt queues an entry made at t by the call at pc (0: none); with block
// it waits for room in the queue. own marks logx's own entry (entry.own).
func (lx *Stream) logAt(t time.Time, level slog.Level, pc uintptr, msg string, args []any, block, own bool) error {
	//lint:ignore SA1012 nil says there is no context: ContextAttrs is not called
	e, err := lx.newEntry(nil, t, level, pc, msg, nil, args, nil, nil)
	if err == nil {
		e.own = own
		if err = lx.enqueue(context.Background(), e, block); err != nil {
			lx.putEntry(e)
		}
	}
	return err
}

// noteAsync counts the error of an asynchronous call (Debug/Info/Warn/
// Error, LogAttrs, the handler) that could not queue its entry
// (Stats.AsyncErrors), and, unless Close had begun, as a loss the next
// Flush reports: a call made after Close began is not before any Flush.
func (lx *Stream) noteAsync(err error) {
	if err == nil {
		return
	}
	lx.stats.asyncRejected.Add(1)
	if !errors.Is(err, ErrClosed) {
		lx.stats.lost.lost.Add(1)
	}
}

// LogAttrs logs like Info at the given level, with attributes given as
// slog.Attr, like slog.Logger.LogAttrs. It is the cheapest way to log:
// with up to a few attributes it allocates nothing, where Info's ...any
// arguments make the caller box values (ints above 255, strings that are not
// constants). When the queue is full LogAttrs blocks until there is room or
// ctx ends (or drops the entry if Config.DropWhenFull is set).
func (lx *Stream) LogAttrs(ctx context.Context, level slog.Level, msg string, attrs ...slog.Attr) {
	if !lx.Enabled(level) {
		return
	}
	t := lx.now()
	if s := lx.sampler; s != nil && !s.allow(level, msg, t.UnixNano()) {
		return
	}
	e, err := lx.newEntry(ctx, t, level, callerPC(2), msg, nil, nil, attrs, nil)
	if err == nil {
		if err = lx.enqueue(ctx, e, !lx.cfg.DropWhenFull); err != nil {
			lx.putEntry(e)
		}
	}
	lx.noteAsync(err)
}

// Append logs an entry and waits until it is committed: when it returns nil
// the entry is in the Raft log of a majority and every node's file will hold
// it, under the returned sequence number. Entries below the minimum level
// are not logged (seq 0, nil error). On error the entry was not committed,
// except for ErrOutcomeUnknown, which says it may have been. Append honours
// ctx: an entry still queued when ctx ends is withdrawn, and none is sent
// under a ctx that has ended already.
func (lx *Stream) Append(ctx context.Context, level slog.Level, msg string, args ...any) (seq uint64, err error) {
	if !lx.Enabled(level) {
		return 0, nil
	}
	e, err := lx.newEntry(ctx, lx.now(), level, callerPC(2), msg, nil, args, nil, nil)
	if err != nil {
		return 0, err
	}
	return lx.appendEntry(ctx, e)
}

func (lx *Stream) appendEntry(ctx context.Context, e *entry) (uint64, error) {
	if err := ctx.Err(); err != nil { // ended already: nothing is sent
		lx.putGroup(e)
		return 0, fmt.Errorf("logx: entry withdrawn before it was sent: %w", err)
	}
	// The producer recycles e once it is done with it: keep only w.
	w := &waiter{done: make(chan struct{}), epoch: lx.releases.Load()}
	e.w = w
	if err := lx.enqueue(ctx, e, true); err != nil {
		lx.putGroup(e)
		return 0, err
	}
	return w.wait(ctx)
}

// wait waits for the producer's answer, or ctx: an entry not yet sent is
// withdrawn, and one sent has an unknown outcome.
func (w *waiter) wait(ctx context.Context) (uint64, error) {
	select {
	case <-w.done:
		return w.seq, w.err
	case <-ctx.Done():
		if w.state.CompareAndSwap(waitPending, waitCancelled) {
			return 0, fmt.Errorf("logx: entry withdrawn before it was sent: %w", ctx.Err())
		}
		select {
		case <-w.done: // answered as ctx ended: select picks either
			return w.seq, w.err
		default:
		}
		return 0, fmt.Errorf("%w: %w", ErrOutcomeUnknown, ctx.Err())
	}
}

// Record is one entry of AppendBatch: a level, a message and attributes,
// as LogAttrs takes them.
type Record struct {
	Level slog.Level
	Msg   string
	Attrs []slog.Attr
}

// AppendBatch logs recs as one unit and waits until it is committed: the
// records go into the log together, one after the other, in one Raft
// entry, or none of them does (a rotation by size may fall between them,
// as between any two lines); it returns the sequence number of the
// first, the others following it. The records at a level this stream does
// not log are left out (all of them: seq 0, nil error). At most
// MaxBatchEntries records, rendering to at most MaxBatchBytes in all
// (ErrEntryTooLarge otherwise). Errors are Append's: on ErrOutcomeUnknown
// all of them may be in the log, or none.
func (lx *Stream) AppendBatch(ctx context.Context, recs []Record) (first uint64, err error) {
	if len(recs) == 0 {
		return 0, errors.New("logx: AppendBatch: no records")
	}
	if len(recs) > lx.cfg.MaxBatchEntries {
		return 0, fmt.Errorf("%w: a batch of %d records, the limit is MaxBatchEntries %d", ErrEntryTooLarge, len(recs), lx.cfg.MaxBatchEntries)
	}
	pc, t := callerPC(2), lx.now()
	var head *entry
	size := 0
	for _, r := range recs {
		if !lx.Enabled(r.Level) {
			continue
		}
		e, err := lx.newEntry(ctx, t, r.Level, pc, r.Msg, nil, nil, r.Attrs, nil)
		if err != nil {
			if head != nil {
				lx.putGroup(head)
			}
			return 0, err
		}
		size += wire.RecordSize(len(e.body))
		if head == nil {
			head = e
		} else {
			head.group = append(head.group, e)
		}
	}
	if head == nil {
		return 0, nil
	}
	if size > lx.cfg.MaxBatchBytes {
		lx.putGroup(head)
		return 0, fmt.Errorf("%w: the batch renders to %d bytes, the limit is MaxBatchBytes %d", ErrEntryTooLarge, size, lx.cfg.MaxBatchBytes)
	}
	return lx.appendEntry(ctx, head)
}

// putGroup returns e and the entries of its group to the free list.
func (lx *Stream) putGroup(e *entry) {
	for _, m := range e.group {
		lx.putEntry(m)
	}
	lx.putEntry(e)
}

// records and bytes are how many records e and its group make, and their
// size in a batch.
func (e *entry) records() int { return 1 + len(e.group) }

func (e *entry) bytes() int {
	n := wire.RecordSize(len(e.body))
	for _, m := range e.group {
		n += wire.RecordSize(len(m.body))
	}
	return n
}

// newEntry renders the body of an entry into an entry from the free list.
// Attributes come from Config.ContextAttrs (given ctx; nil for the leveled
// calls, which have none), then args (Debug/Info/Warn/Error/Append), attrs
// (LogAttrs) or rec (the slog handler h); h may be nil.
func (lx *Stream) newEntry(ctx context.Context, t time.Time, level slog.Level, pc uintptr, msg string, h *handler, args []any, attrs []slog.Attr, rec *slog.Record) (*entry, error) {
	t = recordTime(t)
	e := lx.getEntry()
	b := appendBodyStart(e.body[:0], lx.cfg.Format, t, level, lx.cfg.NodeID, callerString(pc), msg)
	if ctx != nil && lx.cfg.ContextAttrs != nil {
		for _, a := range lx.cfg.ContextAttrs(ctx) {
			if lx.cfg.Format == FormatJSON {
				b = appendAttrJSON(b, a, 1)
			} else {
				b = appendAttrText(b, "", a)
			}
		}
	}
	b = h.appendAttrs(b, lx.cfg.Format, args, attrs, rec)
	e.body = b
	if len(b) > lx.cfg.MaxEntrySize {
		lx.putEntry(e)
		lx.stats.rejected.Add(1)
		return nil, fmt.Errorf("%w: %d bytes rendered, the limit is %d", ErrEntryTooLarge, len(b), lx.cfg.MaxEntrySize)
	}
	e.level, e.nanos = level, 0
	if !t.IsZero() {
		e.nanos = t.UnixNano()
	}
	return e, nil
}

// getEntry takes an entry from the free list, or makes one.
func (lx *Stream) getEntry() *entry {
	select {
	case e := <-lx.free:
		return e
	default:
		return &entry{body: make([]byte, 0, 256)}
	}
}

// putEntry returns an entry the producer is done with (its batch is encoded
// and its waiter answered) to the free list. The list holds as many entries
// as can be in flight at once (the queue and one batch), so once warm,
// logging allocates no entries; a body grown past maxPooledBody is let go so
// that one large entry does not pin its memory.
func (lx *Stream) putEntry(e *entry) {
	e.w, e.group, e.member, e.own = nil, nil, false, false
	if cap(e.body) > maxPooledBody {
		e.body = nil
	}
	select {
	case lx.free <- e:
	default:
	}
}

const maxPooledBody = 4 << 10

// enqueue puts e in the queue; with block it waits for room until ctx ends.
func (lx *Stream) enqueue(ctx context.Context, e *entry, block bool) error {
	lx.qmu.RLock()
	defer lx.qmu.RUnlock()
	if lx.closed {
		return ErrClosed
	}
	if lx.removed.Load() {
		return ErrRemoved
	}
	select {
	case lx.queue <- e:
		lx.stats.enqueued.Add(1)
		return nil
	default:
	}
	if !block {
		lx.stats.dropped.Add(1)
		return ErrQueueFull
	}
	var done <-chan struct{} // a nil ctx (slog.Logger.LogAttrs allows one) never ends
	if ctx != nil {
		done = ctx.Done()
	}
	select {
	case lx.queue <- e:
		lx.stats.enqueued.Add(1)
		return nil
	case <-done:
		return ctx.Err()
	case <-lx.closing:
		return ErrClosed
	}
}

// Flush waits until every entry logged through this node before the call
// has been committed and written to this node's file, or ctx ends. It
// returns the error of the last batch if that batch failed; ErrClosed if
// Close begins and gives up its own flush (CloseTimeout) first; and, with
// those or alone, an error wrapping ErrEntriesLost if, since the last
// Flush that reported a loss, an asynchronous entry (Debug/Info/Warn/
// Error, LogAttrs, the handler) logged through this node was not
// committed (its batch failed, or the call could not queue it: too
// large, queue full) or its outcome is unknown. A loss is reported by
// every Flush that began before one reported it, so a Flush that returns
// nil acknowledges the entries logged before it unless another Flush of
// this node reported a loss in between (Stats counts every one: Failed,
// AsyncErrors). Append's and AppendBatch's entries are not counted: they
// report their own outcome. Calls made after Close began are not either,
// nor logx's own entries.
func (lx *Stream) Flush(ctx context.Context) error {
	lx.qmu.RLock()
	closed := lx.closed
	lx.qmu.RUnlock()
	if closed {
		return ErrClosed
	}
	return lx.flush(ctx)
}

func (lx *Stream) flush(ctx context.Context) error {
	seen := lx.flushSeen.load() // losses a Flush has reported already
	req := &flushReq{done: make(chan struct{})}
	select {
	case lx.queue <- &entry{flush: req}:
	case <-ctx.Done():
		return ctx.Err()
	case <-lx.stopped:
		return ErrClosed
	}
	select {
	case <-req.done:
	case <-ctx.Done():
		return ctx.Err()
	case <-lx.stopped:
		select {
		case <-req.done: // completed by the producer's last pass
		default:
			return ErrClosed
		}
	}
	lost := lx.flushSeen.reportSince(seen, req.lost)
	err := req.err
	if err == nil {
		// Close's own flush comes before the halt: a Flush that waits
		// beside it ends with it, once Close gives up (ErrClosed) instead
		// of waiting for an apply that may never come.
		err = lx.waitAppliedHere(ctx, req.idx, lx.fsm.stopContext())
	}
	switch {
	case lost == nil:
		return err
	case err == nil:
		return lost
	}
	return errors.Join(err, lost)
}

// waitAppliedHere waits until this node applied Raft index idx. It gives
// up when ctx ends (ctx.Err()), when the node learns it was removed
// (ErrRemoved: the leader stopped replicating to it, so it may never
// apply idx), and when closed ends (ErrClosed).
func (lx *Stream) waitAppliedHere(ctx context.Context, idx uint64, closed context.Context) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(lx.removedCtx, cancel)()
	defer context.AfterFunc(closed, cancel)()
	err := lx.waitApplied(wctx, idx)
	if !errors.Is(err, errWaitAborted) {
		return err
	}
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case closed.Err() != nil:
		return ErrClosed
	}
	return ErrRemoved
}
