package logx

import (
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
// applyLocal lends them to the stream's expandedSet while Raft commits the
// batch, and apply reads them instead of decoding (fsm.applyBatch). A
// follower's apply finds nothing there and decodes, as before.
//
// The records change hands. Whoever lends them never touches them again:
// apply takes them (and returns them to the pool once the lines are
// written), or applyLocal drops them when the commit is over, whatever its
// outcome. So apply can never read records being reused, not even when
// Raft hands apply the batch from its log cache after a failed commit (the
// cache keeps the very slice the leader proposed): by then they were
// dropped, and apply decodes. The records are only ever what decoding the
// batch gives (wire.ReadExpandedBatch also checks their length), so the
// lines are the same bytes either way (TestExpandedBatches).
//
// A batch is known by the address of its first byte. The set keeps the
// batch reachable through that pointer, so no other batch can be given
// the same address while it is there.
type expandedSet struct {
	mu sync.Mutex
	m  map[*byte]*[]byte
	// lent and taken count loans and the loans apply used (tests).
	lent, taken atomic.Uint64
}

// recordBufs holds buffers of expanded records: a producer encodes into
// one, a forwarding connection checks a batch in one.
var recordBufs = sync.Pool{New: func() any { return new([]byte) }}

// lend hands recs, batch's records expanded, to apply until drop(batch).
// It does nothing for a batch that is not compressed (apply reads its
// records in place) and puts recs back in the pool.
func (s *expandedSet) lend(batch []byte, recs *[]byte) {
	if recs == nil {
		return
	}
	if !wire.Compressed(batch) {
		recordBufs.Put(recs)
		return
	}
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[*byte]*[]byte)
	}
	s.m[&batch[0]] = recs
	s.mu.Unlock()
	s.lent.Add(1)
}

// take removes and returns the records lent for batch, or nil. The caller
// owns them: it puts them back in recordBufs when done.
func (s *expandedSet) take(batch []byte) *[]byte {
	if len(batch) == 0 {
		return nil
	}
	s.mu.Lock()
	recs, ok := s.m[&batch[0]]
	if ok {
		delete(s.m, &batch[0])
	}
	s.mu.Unlock()
	return recs
}

// drop ends the loan of batch's records if apply did not take them.
func (s *expandedSet) drop(batch []byte) {
	if recs := s.take(batch); recs != nil {
		recordBufs.Put(recs)
	}
}

// size is the number of loans outstanding (tests).
func (s *expandedSet) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
