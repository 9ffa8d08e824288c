package logx

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Closing a stream: Logx.Close stops each stream here.

// stop closes the stream (see Logx.Close); later calls return the first
// call's result.
func (lx *Stream) stop() error {
	lx.closeOnce.Do(func() { lx.closeErr = lx.close() })
	return lx.closeErr
}

func (lx *Stream) close() error {
	_ = lx.seams.open(lx.name, "close")
	if lx.sampler != nil {
		lx.logSummaries(lx.sampler, false) // what the unfinished interval dropped, if the queue has room
	}
	close(lx.closing)
	lx.cancelClosing()
	lx.stopGoroutines()
	lx.qmu.Lock()
	lx.closed = true
	lx.qmu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), lx.cfg.CloseTimeout)
	ferr := lx.flush(ctx)
	cancel()
	close(lx.abort)
	lx.fsm.halt() // an apply waiting for the disk or for a catch-up gives up; a catch-up stops
	lx.awaitStopped()
	// The producer has stopped: the asynchronous entries Close gave up on
	// (queued, or in the batch under way) are counted now, and so are
	// those an earlier loss left that the flush, timed out, did not report.
	if lost := lx.flushSeen.reportSince(lx.flushSeen.load(), lx.stats.lost.load()); lost != nil {
		ferr = errors.Join(ferr, lost)
	}

	var errs []error
	// A removed node's flush fails with ErrRemoved, which is no error of
	// Close's; a loss joined to it still is.
	if ferr != nil && (!errors.Is(ferr, ErrRemoved) || errors.Is(ferr, ErrEntriesLost)) {
		errs = append(errs, fmt.Errorf("logx: flushing on close: %w", ferr))
	}
	if lx.raft.State() == raft.Leader && lx.voters() > 1 {
		lx.barrierWithin(lx.cfg.ElectionTimeout) // commit.go
		_ = lx.transferLeadership()
	}
	<-lx.monitorDone
	lx.raft.DeregisterObserver(lx.observer)
	if err := lx.shutdownRaftWithin(closeGrace); err != nil {
		errs = append(errs, err)
	}
	lx.goWG.Wait() // they stop with closingCtx and Raft
	lx.fwd.reset()
	lx.transport.Close()
	lx.transport.CloseStreams()
	lx.mux.close()
	<-lx.scrubDone
	if err := lx.fsm.close(); err != nil && lx.fsm.Err() == nil {
		errs = append(errs, fmt.Errorf("logx: closing log files: %w", err))
	}
	if err := lx.closeLog(); err != nil {
		errs = append(errs, err)
	}
	if err := lx.meta.Close(); err != nil {
		errs = append(errs, err)
	}
	return lx.named(errors.Join(errs...))
}

// closeLog closes the Raft log, once Raft has stopped. lagTarget, which a
// status request to another stream of the node may run (Stats), reads the
// log: it holds lagIdx.mu as it does, and skips it once raftStopped is
// set, so it never reads the log as raft-wal closes it (a read then can
// panic inside raft-wal).
func (lx *Stream) closeLog() error {
	lx.lagIdx.mu.Lock()
	defer lx.lagIdx.mu.Unlock()
	return lx.wal.Close()
}

// shutdownRaft stops Raft once, for Close or for a confirmed removal,
// whichever comes first; a second caller waits until the first call has
// stopped Raft, and gets its result.
func (lx *Stream) shutdownRaft() error {
	lx.raftStop.Do(func() {
		lx.raftStopped.Store(true)
		lx.raftMu.Lock()
		lx.raftDown = true
		lx.raftMu.Unlock()
		lx.raftStopErr = lx.raft.Shutdown().Error()
	})
	return lx.raftStopErr
}

// closeGrace is how long Close lets Raft take to stop before it cuts the
// node's connections: a request to a peer that does not answer would
// otherwise hold Raft's shutdown up to the transport's timeout.
const closeGrace = time.Second

// shutdownRaftWithin stops Raft; if that takes longer than d, it closes
// every connection of the stream (requests to peers in flight fail at
// once, new ones are not made; the other streams' are untouched) and then
// waits for Raft to stop.
func (lx *Stream) shutdownRaftWithin(d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- lx.shutdownRaft() }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
	}
	lx.logf("logx: Raft takes more than %v to stop; closing the node's connections", d)
	lx.cutConnections()
	return <-done
}

// awaitStopped waits for the producer to exit once Close has given up on
// commits (lx.abort). A leader whose followers answer its heartbeats but
// store nothing (their Raft logs' disks are full) keeps leading and
// commits nothing, and its producer would wait for the batch it proposed
// for good (Raft's futures end only with an answer). After an
// ElectionTimeout the stream's connections are cut: the leader steps down
// at the end of its lease, and Raft answers what it proposed as lost
// (ErrOutcomeUnknown to its callers). Raft is still running then, so
// nothing it was asked is left unanswered when it stops.
func (lx *Stream) awaitStopped() {
	t := time.NewTimer(lx.cfg.ElectionTimeout)
	defer t.Stop()
	select {
	case <-lx.stopped:
		return
	case <-t.C:
	}
	lx.logf("logx: closing: the batch under way is still not committed %v after Close gave up; closing the stream's connections", lx.cfg.ElectionTimeout)
	lx.cutConnections()
	<-lx.stopped
}

// cutConnections closes every connection of the stream (requests to peers
// in flight fail at once, new ones are not made; the other streams' are
// untouched).
func (lx *Stream) cutConnections() {
	lx.mux.shut()
	lx.transport.CloseStreams()
}
