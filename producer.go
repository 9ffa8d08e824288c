package logx

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// produce is the node's committer: it takes entries from the queue in order,
// packs them into a batch (one Raft entry), gives every entry the next
// producer sequence number, and commits the batch, locally when this node
// leads and through the leader otherwise. One batch is in flight at a time,
// so a goroutine's entries keep their order and a retried batch can only be
// a repeat of the latest one, which apply recognises and drops.
func (lx *Logx) produce() {
	defer close(lx.stopped)
	var (
		ents    []*entry
		flushes []*flushReq
		lastIdx uint64 // Raft index of the last batch committed
		stash   *entry // an entry that did not fit in the previous batch
	)
	for {
		var e *entry
		if stash != nil {
			e, stash = stash, nil
		} else {
			select {
			case e = <-lx.queue:
			case <-lx.abort:
				lx.drain()
				return
			}
		}
		ents, flushes = ents[:0], flushes[:0]
		size := 0
	collect:
		for {
			switch {
			case e.flush != nil:
				flushes = append(flushes, e.flush)
				break collect // the marker completes with this batch
			case e.w != nil && !e.w.state.CompareAndSwap(waitPending, waitTaken):
				// withdrawn by its caller
			default:
				ents = append(ents, e)
				size += recordSize(len(e.body))
			}
			if len(ents) >= lx.cfg.MaxBatchEntries || size >= lx.cfg.MaxBatchBytes {
				break
			}
			select {
			case e = <-lx.queue:
				if e.flush == nil && size+recordSize(len(e.body)) > lx.cfg.MaxBatchBytes {
					stash = e // too big to join: it opens the next batch
					break collect
				}
			default:
				break collect
			}
		}

		var err error
		if len(ents) > 0 {
			h := batchHeader{producer: lx.producer, firstPSeq: lx.pseq + 1, count: len(ents)}
			lx.pseq += uint64(len(ents))
			// Raft keeps the slice it is given: a new one for every batch.
			batch := make([]byte, 0, batchHeaderMax+size)
			batch = appendBatchHeader(batch, h)
			for _, e := range ents {
				batch = appendRecord(batch, e.level, e.nanos, e.body)
			}
			var idx, first uint64
			idx, first, err = lx.submit(batch)
			if err == nil {
				lastIdx = idx
				lx.stats.committed.Add(uint64(len(ents)))
			} else {
				lx.stats.failed.Add(uint64(len(ents)))
			}
			for i, e := range ents {
				if e.w != nil {
					e.w.seq, e.w.err = first+uint64(i), err
					if err != nil {
						e.w.seq = 0
					}
					close(e.w.done)
				}
				ents[i] = nil
			}
		}
		for _, f := range flushes {
			f.idx, f.err = lastIdx, err
			close(f.done)
		}
	}
}

// drain fails everything left in the queue once Close has given up.
func (lx *Logx) drain() {
	fail := func(e *entry) {
		switch {
		case e.flush != nil:
			e.flush.err = ErrClosed
			close(e.flush.done)
		case e.w != nil:
			if e.w.state.CompareAndSwap(waitPending, waitTaken) {
				e.w.err = ErrClosed
				close(e.w.done)
			}
		default:
			lx.stats.failed.Add(1)
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

// submit commits one batch, retrying across leader changes until it
// succeeds, the leader rejects it, or Close gives up.
func (lx *Logx) submit(batch []byte) (idx, first uint64, err error) {
	lx.stats.batches.Add(1)
	backoff := 2 * time.Millisecond
	sent := false // a request may have reached a leader: a failure is then ambiguous
	for {
		var maybeSent bool
		idx, first, maybeSent, err = lx.submitOnce(batch)
		sent = sent || maybeSent
		if err == nil {
			return idx, first, nil
		}
		var rej *rejectedError
		if errors.As(err, &rej) {
			return 0, 0, err
		}
		lx.stats.retries.Add(1)
		select {
		case <-lx.abort:
			if sent {
				return 0, 0, fmt.Errorf("%w: %w (last error: %v)", ErrOutcomeUnknown, ErrClosed, err)
			}
			return 0, 0, fmt.Errorf("%w (last error: %v)", ErrClosed, err)
		case <-time.After(backoff):
		}
		if backoff < 100*time.Millisecond {
			backoff *= 2
		}
	}
}

// submitOnce makes one attempt. maybeSent tells whether the batch may have
// reached a leader's Raft log.
func (lx *Logx) submitOnce(batch []byte) (idx, first uint64, maybeSent bool, err error) {
	if lx.raft.State() == raft.Leader {
		idx, first, err = lx.applyLocal(batch)
		return idx, first, !errors.Is(err, raft.ErrNotLeader), err
	}
	addr, _ := lx.raft.LeaderWithID()
	if addr == "" || string(addr) == lx.cfg.Addr {
		return 0, 0, false, errNoLeader
	}
	lx.stats.forwarded.Add(1)
	idx, first, err = lx.fwd.send(string(addr), batch)
	if err != nil {
		lx.stats.forwardErrors.Add(1)
		var nl errNotLeaderHint
		return 0, 0, !errors.As(err, &nl), err
	}
	return idx, first, true, nil
}

// applyLocal commits a batch through this node's Raft, which must lead.
func (lx *Logx) applyLocal(cmd []byte) (idx, first uint64, err error) {
	f := lx.raft.Apply(cmd, lx.cfg.ForwardTimeout)
	if err := f.Error(); err != nil {
		return 0, 0, err
	}
	res, ok := f.Response().(applyResult)
	if !ok {
		return 0, 0, fmt.Errorf("logx: unexpected apply response %T", f.Response())
	}
	if res.err != nil {
		return 0, 0, res.err
	}
	return f.Index(), res.firstSeq, nil
}
