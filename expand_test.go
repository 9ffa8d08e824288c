package logx

import (
	"testing"

	"github.com/hashicorp/raft"
	"github.com/logx-dev/logx/internal/wire"
	"github.com/stretchr/testify/require"
)

func init() {
	// Every cluster test of the package checks each loan against the
	// decoder, and poisons every buffer put back (expand.go).
	verifyLoans = true
}

// TestExpandedBatches: the leader applies the batches it commits, forwarded
// ones and its own, from the records it already holds expanded (what
// validateBatch decoded, what the producer encoded) instead of decoding
// them again, and a follower applies the batches it forwarded from the
// records it encoded; the rest a follower decodes. The files come out the
// same on every node (and verifyLoans checks every loan against the
// decoder), and no loan outlives its commit.
func TestExpandedBatches(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3, nil)
	var leader *Logx
	var followers []*Logx
	for _, lx := range c.nodes {
		if lx.raft.State() == raft.Leader {
			leader = lx
		} else {
			followers = append(followers, lx)
		}
	}
	require.NotNil(t, leader)
	term := leader.raft.CurrentTerm()
	e := &leader.expanded
	logFrom := func(nodes []*Logx, tag string) {
		for i, lx := range nodes {
			for k := range 3000 {
				lx.Info("request served for a customer", "tag", tag, "node", i, "k", k)
			}
		}
		c.flushAll()
	}

	// Forwarded batches only: the leader lends what it expanded to check them.
	logFrom(followers, "fwd")
	fwdLent, fwdUsed := e.lent.Load(), e.used.Load()
	var forwarded uint64
	for _, f := range followers {
		forwarded += f.Stats().Forwarded
	}
	require.GreaterOrEqual(t, fwdLent, uint64(2), "forwarded batches were not lent (%d forwarded)", forwarded)

	// The leader's own batches.
	logFrom([]*Logx{leader}, "own")
	require.Greater(t, e.lent.Load(), fwdLent, "the leader's own batches were not lent")

	n := c.waitSameSeq(9000)
	requireIdentical(t, c.dirs(), "app.log")
	lines := readLines(t, c.dirs()[0], "app.log")
	require.Len(t, lines, int(n))
	requireUnique(t, lines, "tag", "node", "k")
	for _, lx := range c.nodes {
		byAddr, byContent := lx.expanded.size()
		require.Zero(t, byAddr, "%s: a loan outlived its commit", lx.cfg.NodeID)
		require.Zero(t, byContent, "%s: a loan of its own outlived its apply", lx.cfg.NodeID)
		require.LessOrEqual(t, lx.expanded.used.Load(), lx.expanded.lent.Load())
	}
	for _, f := range followers {
		require.Positive(t, f.expanded.used.Load(), "%s decoded every batch it forwarded (%d lent)", f.cfg.NodeID, f.expanded.lent.Load())
	}
	if leader.raft.State() == raft.Leader && leader.raft.CurrentTerm() == term {
		// The same leader throughout: apply read every loan.
		require.Equal(t, fwdLent, fwdUsed, "forwarded batches decoded again")
		require.Equal(t, e.lent.Load(), e.used.Load(), "batches decoded again")
	}
	t.Logf("leader: %d batches lent to apply (%d forwarded), %d used", e.lent.Load(), fwdLent, e.used.Load())
	for _, f := range followers {
		t.Logf("%s: %d of its batches lent to apply, %d used", f.cfg.NodeID, f.expanded.lent.Load(), f.expanded.used.Load())
	}
}

// TestExpandedSetLoans: a loan is only of a compressed batch, take hands
// it over once, and drop ends it.
func TestExpandedSetLoans(t *testing.T) {
	var recs []byte
	for i := range 200 {
		recs = wire.AppendRecord(recs, LevelInfo, int64(i), []byte("level=INFO msg=\"the same words again and again\""))
	}
	h := wire.Header{Producer: 1, FirstPSeq: 1, Count: 200}
	compressed, plain := wire.NewBatch(h, recs, true), wire.NewBatch(h, recs, false)
	require.True(t, wire.Compressed(compressed))

	var s expandedSet
	s.lend(plain, &[]byte{}) // goes back to the pool
	s.lendOwn(plain, &[]byte{})
	require.Zero(t, total(&s), "a plain batch is read in place: nothing to lend")
	require.Nil(t, s.take(plain))

	buf := append([]byte(nil), recs...)
	s.lend(compressed, &buf)
	require.Equal(t, 1, total(&s))
	require.Nil(t, s.take(append([]byte(nil), compressed...)), "another slice with the same bytes is another batch")
	got := s.take(compressed)
	require.NotNil(t, got)
	require.Equal(t, recs, *got)
	require.Nil(t, s.take(compressed), "taken once")
	s.drop(compressed) // after take: nothing
	require.Zero(t, total(&s))

	s.lend(compressed, &[]byte{})
	s.drop(compressed)
	require.Zero(t, total(&s))
	require.Nil(t, s.take(compressed), "dropped")
	require.Nil(t, s.take(nil))
}

// TestExpandedSetOwnLoans: a follower's loans are known by content. take
// finds one for the same bytes anywhere, never for other bytes of the
// same length, drops the loans lent before the one it takes, and at most
// maxOwnLoans wait, the oldest pushed out first.
func TestExpandedSetOwnLoans(t *testing.T) {
	batch := func(p uint64) ([]byte, *[]byte) {
		var recs []byte
		for i := range 100 {
			recs = wire.AppendRecord(recs, LevelInfo, int64(i), []byte("level=INFO msg=\"the same words again and again\""))
		}
		return wire.NewBatch(wire.Header{Producer: 7, FirstPSeq: p, Count: 100}, recs, true), &recs
	}
	var s expandedSet
	var batches [][]byte
	var lent []*[]byte
	for i := range maxOwnLoans + 2 {
		b, recs := batch(uint64(1 + 100*i))
		batches, lent = append(batches, b), append(lent, recs)
		s.lendOwn(b, recs)
	}
	_, own := s.size()
	require.Equal(t, maxOwnLoans, own)
	require.Nil(t, s.take(append([]byte(nil), batches[0]...)), "pushed out by later loans")
	require.Nil(t, s.take(append([]byte(nil), batches[1]...)), "pushed out by later loans")

	other := append([]byte(nil), batches[3]...)
	other[len(other)-1] ^= 1 // same length, other bytes
	require.Nil(t, s.take(other))

	got := s.take(append([]byte(nil), batches[3]...)) // the bytes again, elsewhere
	require.Same(t, lent[3], got)
	_, own = s.size()
	require.Equal(t, maxOwnLoans-2, own, "the loan lent before it is dropped")
	require.Nil(t, s.take(batches[2]), "dropped: lent before one applied")
	require.Same(t, lent[5], s.take(batches[5]))
	require.Nil(t, s.take(batches[4]))
	require.Zero(t, total(&s))
	require.Equal(t, uint64(maxOwnLoans+2), s.lent.Load())

	// A node that starts leading lends by address: its loans by content
	// go back to the pool.
	b, recs := batch(1001)
	s.lendOwn(b, recs)
	b2, recs2 := batch(1101)
	s.lend(b2, recs2)
	require.Nil(t, s.take(b), "a follower's loan kept by a leader")
	require.Same(t, recs2, s.take(b2))
	require.Zero(t, total(&s))
}

func total(s *expandedSet) int {
	a, b := s.size()
	return a + b
}
