package logx

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/logx-dev/logx/internal/wire"
)

// produce is the node's committer: it takes entries from the queue in order,
// packs them into a batch (one Raft entry), gives every entry the next
// producer sequence number, and commits the batch, locally when this node
// leads and through the leader otherwise. One batch is in flight at a time,
// so a goroutine's entries keep their order and a retried batch can only be
// a repeat of the latest one, which apply recognises and drops.
func (lx *Stream) produce() {
	defer close(lx.stopped)
	var (
		ents    []*entry
		flushes []*flushReq
		lastIdx uint64 // Raft index of the last batch committed
		stash   *entry // an entry that did not fit in the previous batch
		back    rejoin // the callers the last batch answered (callerWait)
	)
	// Clock reports (clock.go) go out between batches: every
	// clockEvery, and every quarter second until the first one commits.
	clockEvery := cmp.Or(lx.seams.clockEvery, defaultClockEvery)
	wait, gap := callerWait, callerGap
	if lx.seams.callerWait != 0 {
		wait, gap = lx.seams.callerWait, lx.seams.callerWait
	}
	clock := time.NewTimer(0)
	defer clock.Stop()
	reported := false
	for {
		var e *entry
		if stash != nil {
			e, stash = stash, nil
		} else {
			select {
			case e = <-lx.queue:
			case <-clock.C:
				lx.useCurrentTLS() // an idle stream's clock reports go with the current certificate too
				lx.ensureVoters()
				lx.proposeSettings()
				reported = lx.reportClock() || reported
				lx.pruneRaftPool()
				next := clockEvery
				if lx.idle.Load() && lx.fsm.votersAreKnown() { // until it knows them, ensureVoters asks with each report
					next = max(next, idleClockEvery) // idle.go
				}
				if !reported {
					next = min(next, 250*time.Millisecond)
				}
				clock.Reset(next)
				continue
			case <-lx.clockNow: // idle.go
				clock.Reset(0)
				continue
			case <-lx.abort:
				lx.drain()
				return
			}
		}
		lx.markActive()
		ents, flushes = ents[:0], flushes[:0]
		size := 0
	collect:
		for {
			switch {
			case e.flush != nil:
				flushes = append(flushes, e.flush)
				break collect // the marker completes with this batch
			case e.w != nil && e.w.state.Load() == waitCancelled:
				lx.putGroup(e) // withdrawn by its caller
			default:
				size += e.bytes()
				ents = append(ents, e)
				back.joined(e)
				for _, m := range e.group { // an AppendBatch: laid out behind its first
					m.member = true
					ents = append(ents, m)
				}
				e.group = nil
			}
			if len(ents) >= lx.cfg.MaxBatchEntries || size >= lx.cfg.MaxBatchBytes {
				break
			}
			for e = nil; e == nil; {
				select {
				case e = <-lx.queue:
				default:
					if !back.keepWaiting(wait, gap) {
						break collect
					}
					runtime.Gosched()
				}
			}
			if e.flush == nil && (size+e.bytes() > lx.cfg.MaxBatchBytes || len(ents)+e.records() > lx.cfg.MaxBatchEntries) {
				stash = e // too big to join: it opens the next batch
				break collect
			}
		}

		var err error
		if len(ents) > 0 {
			var kept []*entry
			var idx, first uint64
			kept, idx, first, err = lx.commit(ents)
			if err == nil {
				if len(kept) > 0 {
					lastIdx = idx
				}
				lx.stats.committed.Add(uint64(len(kept)))
			} else {
				lx.stats.failed.Add(uint64(len(kept)))
				lx.noteLost(kept, err)
			}
			// Counted before the first caller is answered, so that it
			// notes the new count when it calls again.
			epoch, answered := lx.releases.Add(1), 0
			for i, e := range kept {
				if e.w != nil {
					if !e.member {
						answered++
					}
					e.w.seq, e.w.err = first+uint64(i), err
					if err != nil {
						e.w.seq = 0
					}
					close(e.w.done)
				}
				lx.putEntry(e)
			}
			clear(ents)
			back.answered(answered, epoch)
		}
		for _, f := range flushes {
			f.idx, f.err, f.lost = lastIdx, err, lx.stats.lost.load()
			close(f.done)
		}
	}
}

// drain fails everything left in the queue once Close has given up.
func (lx *Stream) drain() {
	fail := func(e *entry) {
		switch {
		case e.flush != nil:
			e.flush.err = ErrClosed
			close(e.flush.done)
		case e.w != nil:
			if e.w.state.CompareAndSwap(waitPending, waitSent) {
				e.w.err = ErrClosed
				close(e.w.done)
			}
			lx.putGroup(e)
		default:
			lx.stats.failed.Add(1)
			if !e.own {
				lx.stats.lost.lost.Add(1) // Close reports it (ErrEntriesLost)
			}
			lx.putEntry(e)
		}
	}
	for {
		select {
		case e := <-lx.queue:
			fail(e)
		default:
			return
		}
	}
}

// commit commits one batch, retrying across leader changes until it
// succeeds, the leader rejects it, or Close gives up. Until a leader is
// known the entries stay withdrawable; just before the first attempt they
// are claimed (Append can no longer withdraw them), numbered and encoded.
// commit returns the entries it sent, in batch order.
func (lx *Stream) commit(ents []*entry) (kept []*entry, idx, first uint64, err error) {
	lx.stats.batches.Add(1)
	var batch []byte
	var recs *[]byte // batch's records, expanded, until applyBatchLocal takes them (expand.go)
	defer func() { putRecords(recs) }()
	backoff := 2 * time.Millisecond
	sent := false // a request may have reached a leader: a failure is then ambiguous
	var firstSent time.Time
	var lastLog time.Time
	lx.useCurrentTLS() // a new certificate: a new producer id, before this batch is numbered
	for {
		if lx.removed.Load() {
			if batch == nil {
				ents = lx.claim(ents)
			}
			if sent {
				return ents, 0, 0, fmt.Errorf("%w: %w (last error: %v)", ErrOutcomeUnknown, ErrRemoved, err)
			}
			return ents, 0, 0, ErrRemoved
		}
		if window := lx.dedupWindow(); sent && !retryFits(firstSent, window) {
			// Retrying longer could outlive the leader's memory of this
			// producer (dedup.go) and write the batch twice.
			return ents, 0, 0, fmt.Errorf("%w: tried for half the dedup window (%v) since the first try; last error: %v", ErrOutcomeUnknown, window/2, err)
		}
		maybeSent := false
		tryStart := time.Now()
		leader, local := lx.route()
		if local || leader != "" {
			if batch == nil {
				if ents = lx.claim(ents); len(ents) == 0 {
					return nil, 0, 0, nil
				}
				batch, recs = lx.encode(ents)
			}
			if local {
				lx.proposeSettings()
				idx, first, err = lx.applyBatchLocal(batch, lx.ids.Load().batches, recs)
				recs = nil // lent, and dropped by now
				maybeSent = !unproposed(err)
			} else {
				if recs != nil { // expand.go
					lx.expanded.lendOwn(batch, recs)
					recs = nil
				}
				lx.stats.forwarded.Add(1)
				idx, first, err = lx.fwd.send(leader, batch, tryBy(tryStart, firstSent, lx.cfg.ForwardTimeout, lx.dedupWindow()))
				var nl errNotLeaderHint
				var ns errNotSent
				maybeSent = !errors.As(err, &nl) && !errors.As(err, &ns)
				if err != nil {
					lx.stats.forwardErrors.Add(1)
				}
			}
		} else {
			err = errNoLeader
		}
		sentBefore := sent
		if maybeSent && !sent {
			sent, firstSent = true, tryStart
		}
		if err == nil {
			return ents, idx, first, nil
		}
		var rej *rejectedError
		if errors.As(err, &rej) {
			if isProducerConflict(err) {
				// Another sender used this producer id, or the leader
				// saw its sequence out of order: go on under a new one.
				lx.producer, lx.pseq = newProducerID(), 0
				if sentBefore {
					// An earlier attempt may have been written.
					return ents, 0, 0, fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
				}
				// Nothing of it was written: send it again, renumbered.
				lx.logf("logx: %v; sending the batch again under a new producer id", err)
				putRecords(recs)
				batch, recs = lx.encode(ents)
				sent, firstSent = false, time.Time{}
				continue
			}
			lx.logf("logx: committing a batch of %d entries: %v; not retried, the entries fail", len(ents), err)
			if sentBefore {
				// An earlier try may have been committed (by a leader
				// whose answer was lost); this leader refusing it (its
				// limits may differ) does not say otherwise.
				return ents, 0, 0, fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
			}
			return ents, 0, 0, err
		}
		lx.stats.retries.Add(1)
		if time.Since(lastLog) >= retryLogEvery {
			lx.logf("logx: committing a batch of %d entries: %v; retrying", len(ents), err)
			lastLog = time.Now()
		}
		select {
		case <-lx.abort:
			if batch == nil {
				ents = lx.claim(ents)
			}
			if sent {
				return ents, 0, 0, fmt.Errorf("%w: %w (last error: %v)", ErrOutcomeUnknown, ErrClosed, err)
			}
			return ents, 0, 0, fmt.Errorf("%w (last error: %v)", ErrClosed, err)
		case <-time.After(backoff):
		}
		if backoff < 100*time.Millisecond {
			backoff *= 2
		}
	}
}

// retryLogEvery limits how often a failing batch is reported.
const retryLogEvery = 5 * time.Second

// claim marks the entries as sent, dropping (and recycling) those their
// callers withdrew.
func (lx *Stream) claim(ents []*entry) []*entry {
	kept := ents[:0]
	dropped := false // the last entry that was not a member was withdrawn: so are its members
	for _, e := range ents {
		if !e.member {
			dropped = e.w != nil && !e.w.state.CompareAndSwap(waitPending, waitSent)
		}
		if dropped {
			lx.putEntry(e)
		} else {
			kept = append(kept, e)
		}
	}
	clear(ents[len(kept):])
	return kept
}

// encode numbers the entries with the next producer sequence numbers and
// encodes them as one batch. Raft keeps the slice: a new one every time.
// recs holds the batch's records, uncompressed, in a buffer of recordBufs
// the caller owns: a leader's apply reads them instead of expanding the
// batch again (expand.go).
func (lx *Stream) encode(ents []*entry) (batch []byte, recs *[]byte) {
	h := wire.Header{Producer: lx.producer, FirstPSeq: lx.pseq + 1, Count: len(ents)}
	lx.pseq += uint64(len(ents))
	recs = getRecords()
	b := (*recs)[:0]
	for _, e := range ents {
		b = wire.AppendRecord(b, e.level, e.nanos, e.body)
	}
	*recs = b
	batch = wire.NewBatch(h, b, !lx.cfg.DisableCompression)
	lx.stats.recordBytes.Add(uint64(len(b)))
	lx.stats.batchBytes.Add(uint64(len(batch) - wire.HeaderLen(h)))
	return batch, recs
}

// route says where a batch goes now: this node (local) when it leads, else
// the leader's address, or neither when no leader is known.
func (lx *Stream) route() (leader string, local bool) {
	if lx.raft.State() == raft.Leader {
		return "", true
	}
	addr, _ := lx.raft.LeaderWithID()
	if string(addr) == lx.cfg.Addr {
		return "", false
	}
	return string(addr), false
}

// applyBatchLocal is applyLocal for a batch whose records this node holds
// expanded (recs, nil if not): apply may read them instead of expanding
// the batch (expand.go). recs is lent: the caller does not touch it again.
func (lx *Stream) applyBatchLocal(batch, identity []byte, recs *[]byte) (idx, first uint64, err error) {
	if recs != nil {
		lx.expanded.lend(batch, recs)
		defer lx.expanded.drop(batch)
	}
	return lx.applyLocal(batch, identity)
}

// applyLocal commits a command through this node's Raft, which must lead,
// stamped with the sender's certificate identity (nil without TLS). A
// command apply refused comes back as a *rejectedError.
//
// Raft answers once this node has applied the command. A node whose apply
// is held up (a write error, a catch-up finishing: fsm.applyBlocked) hands
// its leadership over, and then stops waiting: errApplyBlocked, on which
// the batch goes again through the new leader, as after any ambiguous
// failure (a repeat is written once, dedup.go). Without that its own
// callers, and the batches its followers forwarded, would wait for its
// disk while the others commit.
func (lx *Stream) applyLocal(cmd, identity []byte) (idx, first uint64, err error) {
	return lx.applyLocalUntil(context.Background(), cmd, identity)
}

// applyLocalUntil is applyLocal that also gives up waiting when ctx ends,
// with an ErrOutcomeUnknown that wraps ctx's error: for a change a
// caller's context bounds, and for work that the node's Close waits for
// before its streams stop (node.tend's recording of a declared stream),
// which a leader that cannot commit (its followers answer its heartbeats
// but store nothing) would otherwise hold for good.
func (lx *Stream) applyLocalUntil(ctx context.Context, cmd, identity []byte) (idx, first uint64, err error) {
	if lx.heldUp() {
		return 0, 0, errApplyHeld
	}
	var f raft.ApplyFuture
	if err := lx.raftCall(func() error {
		f = lx.raft.ApplyLog(raft.Log{Data: cmd, Extensions: identity}, lx.cfg.ForwardTimeout)
		return lx.awaitApply(ctx, f)
	}); err != nil {
		return 0, 0, err
	}
	res, ok := f.Response().(applyResult)
	if !ok {
		return 0, 0, fmt.Errorf("logx: unexpected apply response %T", f.Response())
	}
	var ref *refusedError
	if errors.As(res.err, &ref) {
		return 0, 0, &rejectedError{msg: ref.msg}
	}
	if res.err != nil {
		return 0, 0, res.err
	}
	return f.Index(), res.firstSeq, nil
}

// heldUp reports whether this node's apply is held up (a write error, a
// catch-up finishing: fsm.applyBlocked), so that it must propose nothing,
// since Raft would hold the command until apply resumes. A leader hands
// over (or cannot: a cluster of one), here too because it may have been
// elected after apply's last retry told it to.
func (lx *Stream) heldUp() bool {
	if !lx.fsm.applyBlocked() {
		if lx.handOverGap.Load() != 0 {
			lx.handOverGap.Store(0) // it applies: the next hold-up hands over at once
		}
		return false
	}
	lx.handOver("apply held up")
	return true
}

// errApplyBlocked: this node committed a command while it led, but its
// apply is held up and another node leads now (applyLocal).
var errApplyBlocked = fmt.Errorf("%w: this node no longer leads and cannot apply yet (a write error or a catch-up), so it cannot say whether it was committed", ErrOutcomeUnknown)

// errApplyHeld: this node leads but its apply is held up, so it proposes
// nothing (applyLocal); it wraps raft.ErrNotLeader, since the caller may
// send the command elsewhere, or again, as it is.
var errApplyHeld = fmt.Errorf("%w: this node cannot apply yet (a write error or a catch-up) and hands its leadership over", raft.ErrNotLeader)

// applyCheckEvery is how often applyLocal looks whether a wait for this
// node's apply should end (errApplyBlocked).
const applyCheckEvery = 100 * time.Millisecond

// awaitApply waits for f, Raft's answer to a command this node proposed,
// until ctx ends, or this node's apply is held up and it no longer leads
// (errApplyBlocked): awaitAnswer.
func (lx *Stream) awaitApply(ctx context.Context, f raft.ApplyFuture) error {
	return awaitAnswer(ctx, f, func() error {
		if lx.fsm.applyBlocked() && lx.raft.State() != raft.Leader {
			return errApplyBlocked
		}
		return nil
	})
}

// reportClock commits this node's clock to the log (clock.go), once; a
// failed report is followed by the next one. Only voters report.
func (lx *Stream) reportClock() bool {
	if suf, ok, err := lx.suffrage(lx.cfg.Addr); err != nil || !ok || suf != raft.Voter {
		return false
	}
	cmd := appendClock(nil, lx.cfg.Addr, lx.now().UnixNano())
	leader, local := lx.route()
	var err error
	switch {
	case local:
		_, _, err = lx.applyLocal(cmd, lx.ids.Load().clocks)
	case leader != "":
		_, _, err = lx.fwd.send(leader, cmd, time.Now().Add(lx.cfg.ForwardTimeout))
	default:
		return false
	}
	if err != nil {
		if time.Since(lx.lastClockLog) >= retryLogEvery {
			lx.logf("logx: reporting this node's clock: %v", err)
			lx.lastClockLog = time.Now()
		}
		return false
	}
	return true
}

// proposeSettings records this node's settings as the cluster's
// (settings.go) if it leads and its log holds none yet; the first recorded
// win. A leader calls it before it commits a batch, so that no line is
// written before the cluster's settings are known (a new leader whose
// apply lags may record them again: ignored). One proposal at a time.
func (lx *Stream) proposeSettings() {
	if lx.fsm.clusterSettings() != nil {
		return
	}
	lx.settingsMu.Lock()
	defer lx.settingsMu.Unlock()
	if lx.fsm.clusterSettings() != nil || lx.raft.State() != raft.Leader {
		return
	}
	if _, _, err := lx.applyLocal(appendSettings(nil, settingsOf(lx.cfg)), lx.ids.Load().batches); err != nil {
		lx.logf("logx: recording the cluster's settings: %v", err)
	}
}

// newProducerID returns a random producer id.
func newProducerID() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return binary.BigEndian.Uint64(b[:])
}

// callerWait is how long the committer waits, at most, for the callers of
// Append its last batch answered to call again, before it sends the next
// batch without them; callerGap is how long it waits for the next of them
// once the last came back (or since the answer, for the first).
//
// Why: a caller waits for its entry's batch, and one batch is in flight at
// a time, so while one is in flight the other callers' entries queue, and
// the answered callers call again just after the committer has taken the
// queue. Without the wait, closed-loop callers split into two groups that
// take turns, each batch holding half of them: two callers on a node never
// shared a batch. Their next calls come within microseconds (a batch's
// round takes hundreds), and the committer stops waiting once as many
// Appends as it answered have been made since; the entries already
// collected, Info's included, go out at most callerWait later. On two
// cores shared with the other nodes, answered callers are scheduled one
// after another, so they come back spread over a few hundred
// microseconds: each one back extends the wait by callerGap, up to
// callerWait, and a caller that does not come back within callerGap of
// the one before (it has work to do between calls) ends it; a wait that
// reaches callerWait without all of them is a miss (keepWaiting). Against a
// flat 50 µs this gave 64 and 256 callers 5 to 27 % more entries a
// second and bigger batches, and 1 to 16 callers the same within the
// noise (docs/benchmarks.md, "Issue 11, tenth round").
//
// The committer yields while it waits (runtime.Gosched), so that the
// callers can run; on an idle core that is a busy wait, which callerGap
// ends 50 µs after the last caller came back. When callers do
// not come back (one Append per request, or work between calls), a wait
// that ends with fewer than half of them back is a miss, and after a miss
// the committer sends the next 1, 2, 4, ... up to maxRejoinSkip batches
// without waiting; a wait in which they come back ends that. So traffic
// that never comes back costs one wait in maxRejoinSkip batches.
const (
	callerWait    = 400 * time.Microsecond
	callerGap     = 50 * time.Microsecond
	maxRejoinSkip = 64
)

// rejoin is the committer's memory of the callers its last batch answered.
type rejoin struct {
	expect  int       // callers to wait for; 0: none (or done waiting)
	epoch   uint64    // Stream.releases when they were answered
	at      time.Time // when they were answered
	last    time.Time // when the last of them came back (at: none yet)
	back    int       // Appends made since, in the batch being built
	skip    int       // batches left to send without waiting
	backoff int       // the skip after the next miss
}

// answered starts a new wait: n callers were answered at releases count
// epoch.
func (r *rejoin) answered(n int, epoch uint64) {
	r.expect, r.epoch, r.back = n, epoch, 0
	if r.skip > 0 {
		r.skip--
		r.expect = 0
	}
	if r.expect > 0 { // async batches answer nobody: no clock read for them
		r.at = time.Now()
		r.last = r.at
	}
}

// joined counts e, an entry of the batch being built, if its Append was
// made since the callers were answered.
func (r *rejoin) joined(e *entry) {
	if e.w != nil && e.w.epoch == r.epoch {
		r.back++
		if r.expect > 0 {
			r.last = time.Now()
		}
	}
}

// keepWaiting says, with the queue empty, whether to wait on for callers:
// while fewer are back than were answered, for at most limit since the
// answer and gap since the last one came back. A wait that ends with
// fewer than half back is a miss, and so is one that runs to the limit
// without all of them: Appends that keep coming for that long are new
// callers' (one Append per request at a high rate) more than the answered
// ones coming back, and waiting for them would add limit to every batch.
func (r *rejoin) keepWaiting(limit, gap time.Duration) bool {
	if r.expect == 0 {
		return false
	}
	now := time.Now()
	timeUp := now.Sub(r.at) > limit
	switch {
	case r.back >= r.expect:
		r.backoff = 0
	case !timeUp && now.Sub(r.last) <= gap:
		return true
	case timeUp || 2*r.back < r.expect: // a miss
		r.backoff = min(max(1, 2*r.backoff), maxRejoinSkip)
		r.skip = r.backoff
	}
	r.expect = 0 // done with this wait
	return false
}

// noteLost counts the asynchronous entries of a failed batch for Flush to
// report: not an Append's or an AppendBatch's (their caller gets the
// batch's error itself; an AppendBatch's other records are members), nor
// logx's own.
func (lx *Stream) noteLost(ents []*entry, err error) {
	n := uint64(0)
	for _, e := range ents {
		if e.w == nil && !e.member && !e.own {
			n++
		}
	}
	if errors.Is(err, ErrOutcomeUnknown) {
		lx.stats.lost.unknown.Add(n)
	} else {
		lx.stats.lost.lost.Add(n)
	}
}

// losses are counts of asynchronous entries not committed (lost) and of
// those whose outcome is unknown.
type losses struct{ lost, unknown atomic.Uint64 }

// lossCount is a snapshot of losses.
type lossCount struct{ lost, unknown uint64 }

func (l *losses) load() lossCount { return lossCount{l.lost.Load(), l.unknown.Load()} }

// reportSince returns the error a Flush that began when seen had been
// reported gives for now, and marks now reported; nil if nothing was lost
// since.
func (l *losses) reportSince(seen, now lossCount) error {
	lost, unknown := now.lost-min(seen.lost, now.lost), now.unknown-min(seen.unknown, now.unknown)
	if lost == 0 && unknown == 0 {
		return nil
	}
	storeMax(&l.lost, now.lost)
	storeMax(&l.unknown, now.unknown)
	msg := fmt.Sprintf("%d asynchronous %s logged through this node not committed", lost, plural(lost, "entry", "entries"))
	if unknown > 0 {
		msg = fmt.Sprintf("%d asynchronous %s logged through this node not committed, and %d whose outcome is unknown (they may be in the log)",
			lost, plural(lost, "entry", "entries"), unknown)
	}
	return fmt.Errorf("%w: %s since the last Flush that reported a loss (Stats: Failed, AsyncErrors)", ErrEntriesLost, msg)
}

func plural(n uint64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
