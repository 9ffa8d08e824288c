package logx

// The background catch-up: a catch-up that New hands over when it restores
// Raft's stored snapshot finishes on a goroutine of its own, so that a
// start does not wait for the peers (catchup.go has the catch-up itself).

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// stopContext is a context that ends when the fsm's stop channel closes
// (Close), so that a catch-up under way stops.
type stopContext struct{ stop <-chan struct{} }

func (c stopContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c stopContext) Done() <-chan struct{}       { return c.stop }
func (c stopContext) Value(any) any               { return nil }
func (c stopContext) Err() error {
	select {
	case <-c.stop:
		return context.Canceled
	default:
		return nil
	}
}

// background is a catch-up finishing on its own goroutine. Restore hands
// the catch-up over when New restores Raft's stored snapshot (starting):
// there New must not wait for the peers, which may all be down. While the
// goroutine runs it owns the files and f.st; every entry point of the FSM
// first deals with it: ApplyBatch waits for it, Snapshot fails at once,
// Restore (a newer snapshot) cancels it and waits for it to exit, close
// does the same.
type background struct {
	// starting is set while New restores Raft's stored snapshot.
	starting atomic.Bool
	// applyWaiting is set while ApplyBatch waits for the catch-up.
	applyWaiting atomic.Bool
	// err is the catch-up's last failure ("" once it succeeds), for Stats.
	err atomic.Pointer[string]
	// stopOnce closes the fsm's stop channel (halt).
	stopOnce sync.Once

	// The goroutine: cancel stops it, done is closed when it has exited.
	// Both are nil when none runs; only the entry points of the FSM (on
	// Raft's apply goroutine, or New before Raft starts it) touch them.
	cancel context.CancelFunc
	done   chan struct{}
	m      *manifest // the snapshot it catches up to
}

// Background catch-up pauses between attempts: from bgPauseMin, doubling,
// up to bgPauseMax.
const (
	bgPauseMin = 100 * time.Millisecond
	bgPauseMax = 5 * time.Second
)

// stopContext returns a context that ends when the node closes.
func (f *fsm) stopContext() context.Context { return stopContext{f.stop} }

// halt closes stop (once): an apply waiting for the disk or for a
// background catch-up gives up, and a catch-up under way stops.
func (f *fsm) halt() { f.bg.stopOnce.Do(func() { close(f.stop) }) }

// setCatchUpErr records the last catch-up failure (nil: it succeeded).
func (f *fsm) setCatchUpErr(err error) {
	if err == nil {
		f.bg.err.Store(nil)
		return
	}
	s := clipText(err.Error(), maxControlError) // it goes out in every status answer
	f.bg.err.Store(&s)
}

// catchUpErr returns the last catch-up failure, "" if none.
func (f *fsm) catchUpErr() string {
	if s := f.bg.err.Load(); s != nil {
		return *s
	}
	return ""
}

// resumeInBackground starts the goroutine that catches up to m, retrying
// with a growing pause until it succeeds or the node closes.
func (f *fsm) resumeInBackground(m *manifest) {
	ctx, cancel := context.WithCancel(f.stopContext())
	done := make(chan struct{})
	f.bg.cancel, f.bg.done, f.bg.m = cancel, done, m
	var need int64
	for _, mf := range m.Files {
		need += mf.Size
	}
	f.progress.begin(need) // Stats shows it from now on
	f.logf("logx: the catch-up to Raft index %d goes on in the background until a peer answers; this node applies nothing until it is done", m.Index)
	go f.catchUpInBackground(ctx, m, done)
}

// tellBlocked calls onBlocked every second until ctx ends or the function
// it returns is called (and returns once it has stopped): a node elected
// while a catch-up keeps it from applying hands the leadership over.
// Raft does not hand the FSM its no-op entries: a node elected meanwhile
// would lead, unable to apply, until the first command.
func (f *fsm) tellBlocked(ctx context.Context) (stop func()) {
	if f.onBlocked == nil {
		return func() {}
	}
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			f.onBlocked()
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
		}
	})
	return func() { cancel(); wg.Wait() }
}

func (f *fsm) catchUpInBackground(ctx context.Context, m *manifest, done chan struct{}) {
	defer close(done)
	defer f.tellBlocked(ctx)()
	for pause, attempt := time.Duration(0), 1; ; attempt++ {
		if pause > 0 {
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		unguard := f.hooks.guard()
		err := f.catchUp(ctx, m)
		unguard()
		if err == nil {
			f.setCatchUpErr(nil)
			f.endCatchUp()
			return
		}
		if ctx.Err() != nil {
			// Closing, or a newer snapshot supersedes this one; the
			// checkpoint still says a catch-up is under way.
			return
		}
		f.setCatchUpErr(err)
		pause = min(max(2*pause, bgPauseMin), bgPauseMax)
		if errors.Is(err, ErrCorrupt) {
			f.logf("logx: catch-up to Raft index %d, attempt %d: %v; the peers' copies do not match the snapshot; retrying in %v", m.Index, attempt, err, pause)
		} else {
			f.logf("logx: catch-up to Raft index %d, attempt %d: %v; retrying in %v", m.Index, attempt, err, pause)
		}
	}
}

// backgroundBusy reports whether a background catch-up is running; one that
// has exited is cleared.
func (f *fsm) backgroundBusy() bool {
	if f.bg.done == nil {
		return false
	}
	select {
	case <-f.bg.done:
		f.stopBackground()
		return false
	default:
		return true
	}
}

// stopBackground cancels the background catch-up, if any, and waits for
// its goroutine to exit: the caller owns the files again. The checkpoint
// still says a catch-up is under way unless it finished.
func (f *fsm) stopBackground() {
	if f.bg.done == nil {
		return
	}
	f.bg.cancel()
	<-f.bg.done
	f.bg.cancel, f.bg.done, f.bg.m = nil, nil, nil
}

// waitBackground waits until the background catch-up, if any, has
// finished. When the node closes first it returns a sticky error: no batch
// may be applied to unfinished files.
func (f *fsm) waitBackground() error {
	if !f.backgroundBusy() {
		return nil
	}
	f.bg.applyWaiting.Store(true)
	select {
	case <-f.bg.done:
	case <-f.stop: // the catch-up stops too
	}
	f.bg.applyWaiting.Store(false)
	f.stopBackground()
	if f.seg == nil { // it stopped because the node closes
		f.failed = fmt.Errorf("%w while a catch-up from peers was under way", ErrClosed)
		return f.failed
	}
	return nil
}
