package logx

import (
	"bytes"
	"sync"
	"sync/atomic"

	"github.com/logx-dev/logx/internal/wire"
)

// Expanding a batch once on the leader. Every node expands each compressed
// batch it applies (S2 decoding: about a seventh of the in-process
// cluster's CPU under async load, docs/benchmarks.md), and the leader
// used to do it twice for a forwarded batch. But the leader already holds
// the expanded records of every batch it commits: its producer encoded
// them, and validateBatch expanded a forwarded one to check it. So
// applyBatchLocal lends them to the stream's expandedSet while Raft
// commits the batch, and apply reads them instead of decoding
// (fsm.applyBatch).
//
// A follower holds the records of the batches it forwards, too, and gets
// each back from the leader a round later, in other memory: so the
// producer lends them by content (lendOwn) before it forwards a batch,
// apply takes them when the bytes it applies are the very bytes lent
// (bytes.Equal over the compressed batch: a fraction of decoding it), and
// every other batch a follower applies it decodes. A follower cannot
// tell when its forwarded batch will be applied (after the leader's
// answer, with the next AppendEntries), so these loans are not dropped
// when the commit is over: apply takes each, and drops the ones lent
// before it (a producer's batches commit in the order they are lent, so
// an older one still there was almost surely never committed; one that
// was, after its producer gave up on it, is decoded), and at most
// maxOwnLoans wait, the oldest going back to the pool first. A node that
// starts leading drops them at its first loan by address: its old
// forwarded batches are committed or lost by then.
//
// The records change hands. Whoever lends them never touches them again:
// apply takes them (and returns them to the pool once the lines are
// written), or applyBatchLocal drops them when the commit is over,
// whatever its outcome. So apply never reads records being reused. A node
// that loses the leadership in the middle of a commit may still take its
// own loan: Raft answers the proposal with ErrLeadershipLost, and if the
// new leader commits the entry before the producer has dropped the loan,
// this node's Raft hands apply the very slice it proposed, from its log
// cache. The records are exact then too, and once dropped, apply decodes.
//
// The records are what decoding the batch gives, by construction: NewBatch
// compresses exactly the producer's records, and validateBatch's are the
// decoder's output. wire.ReadExpandedBatch uses them only when their
// length is the size the batch's block expands to, and does not walk them
// again before apply does (the encoder wrote them a record at a time, and
// validateBatch walked them to the end), and with verifyLoans
// (set by the package's tests) apply decodes every batch anyway and
// panics if the loan differs, while every buffer put back in the pool is
// overwritten first, so a reader that kept one would write garbage lines
// and make the nodes' files differ.
//
// A batch is known by the address of its first byte and its length. The
// set keeps the batch reachable through that pointer, so no other batch
// can be given the same address while it is there.
type expandedSet struct {
	mu  sync.Mutex
	m   map[loanKey]*[]byte
	own []ownLoan // a follower's loans, known by content, oldest first
	// lent and used count loans and the loans apply read (tests).
	lent, used atomic.Uint64
}

type loanKey struct {
	first *byte
	n     int
}

func keyOf(batch []byte) loanKey { return loanKey{&batch[0], len(batch)} }

// ownLoan is a batch this node forwarded and its records.
type ownLoan struct {
	batch []byte
	recs  *[]byte
}

// maxOwnLoans bounds the loans a follower keeps waiting for apply: its
// producer has one batch in flight, and apply takes each a round later.
const maxOwnLoans = 4

// verifyLoans makes apply check every loan against the decoder, and
// putRecords poison what it puts back (set in tests: expand_test.go).
var verifyLoans bool

// maxPooledRecords bounds the buffers kept in recordBufs: a larger one (a
// MaxBatchBytes above it) is left to the garbage collector.
const maxPooledRecords = 8 << 20

// recordBufs holds buffers of expanded records: a producer encodes into
// one, a forwarding connection checks a batch in one.
var recordBufs = sync.Pool{New: func() any { return new([]byte) }}

// getRecords takes a buffer for expanded records from recordBufs.
func getRecords() *[]byte { return recordBufs.Get().(*[]byte) }

// putRecords puts a buffer of expanded records (nil: none) back in
// recordBufs; its owner does not use it again.
func putRecords(p *[]byte) {
	if p == nil || cap(*p) > maxPooledRecords {
		return
	}
	if verifyLoans {
		b := (*p)[:cap(*p)]
		for i := range b {
			b[i] = 0xa5
		}
	}
	recordBufs.Put(p)
}

// lend hands recs, batch's records expanded, to apply until drop(batch).
// For a batch that is not compressed (apply reads its records in place)
// it puts recs back in the pool instead.
func (s *expandedSet) lend(batch []byte, recs *[]byte) {
	if !wire.Compressed(batch) {
		putRecords(recs)
		return
	}
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[loanKey]*[]byte)
	}
	s.m[keyOf(batch)] = recs
	s.dropOwn(len(s.own)) // this node leads now
	s.mu.Unlock()
	s.lent.Add(1)
}

// dropOwn puts the oldest n loans by content back in the pool; s.mu is
// held.
func (s *expandedSet) dropOwn(n int) {
	for _, o := range s.own[:n] {
		putRecords(o.recs)
	}
	k := copy(s.own, s.own[n:])
	clear(s.own[k:]) // nothing kept reachable from the spare capacity
	s.own = s.own[:k]
}

// lendOwn hands recs, batch's records expanded, to apply until it applies
// batch (the same bytes, wherever they are) or the loan is pushed out by
// later ones. For a batch that is not compressed it puts recs back in the
// pool instead.
func (s *expandedSet) lendOwn(batch []byte, recs *[]byte) {
	if !wire.Compressed(batch) {
		putRecords(recs)
		return
	}
	s.mu.Lock()
	if len(s.own) == maxOwnLoans {
		s.dropOwn(1)
	}
	s.own = append(s.own, ownLoan{batch, recs})
	s.mu.Unlock()
	s.lent.Add(1)
}

// take removes and returns the records lent for batch, or nil. The caller
// owns them: it puts them back with putRecords when done.
func (s *expandedSet) take(batch []byte) *[]byte {
	if len(batch) == 0 {
		return nil
	}
	k := keyOf(batch)
	s.mu.Lock()
	defer s.mu.Unlock()
	if recs, ok := s.m[k]; ok {
		delete(s.m, k)
		return recs
	}
	for i, o := range s.own {
		if bytes.Equal(o.batch, batch) {
			s.own[i].recs = nil // taken: not put back with the older ones
			s.dropOwn(i + 1)
			return o.recs
		}
	}
	return nil
}

// drop ends the loan of batch's records if apply did not take them.
func (s *expandedSet) drop(batch []byte) {
	if recs := s.take(batch); recs != nil {
		putRecords(recs)
	}
}

// size is the number of loans outstanding (tests): lent by address, and
// by content.
func (s *expandedSet) size() (int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m), len(s.own)
}
