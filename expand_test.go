package logx

import (
	"testing"

	"github.com/hashicorp/raft"
	"github.com/logx-dev/logx/internal/wire"
	"github.com/stretchr/testify/require"
)

// TestExpandedBatches: the leader applies the batches it commits, its own
// and forwarded ones, from the records it already holds expanded (the
// producer's, validateBatch's) instead of decoding them again; the
// followers decode. The files come out the same on every node, and no loan
// outlives its commit.
func TestExpandedBatches(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.logFromEveryNode(3000)

	var lent, taken uint64
	for _, lx := range c.nodes {
		e := &lx.expanded
		require.Zero(t, e.size(), "%s: a loan outlived its commit", lx.cfg.NodeID)
		require.LessOrEqual(t, e.taken.Load(), e.lent.Load())
		if lx.raft.State() != raft.Leader {
			// A follower lends nothing (unless it led for a while).
			t.Logf("%s (follower): %d lent, %d taken", lx.cfg.NodeID, e.lent.Load(), e.taken.Load())
		}
		lent += e.lent.Load()
		taken += e.taken.Load()
		require.Greater(t, lx.Stats().Forwarded+e.lent.Load(), uint64(0), "%s sent no batch", lx.cfg.NodeID)
	}
	// Every node's 3000 entries took several compressed batches, and the
	// leader committed them all: its own and the two followers' forwarded
	// ones were lent, and apply used them.
	require.GreaterOrEqual(t, lent, uint64(3), "too few batches were lent")
	require.Greater(t, taken, lent/2, "apply decoded batches the leader held expanded (%d lent, %d taken)", lent, taken)
	t.Logf("%d batches lent to apply, %d taken", lent, taken)
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
	s.lend(plain, &recs)
	require.Zero(t, s.size(), "a plain batch is read in place: nothing to lend")
	require.Nil(t, s.take(plain))

	buf := append([]byte(nil), recs...)
	s.lend(compressed, &buf)
	require.Equal(t, 1, s.size())
	require.Nil(t, s.take(append([]byte(nil), compressed...)), "another slice with the same bytes is another batch")
	got := s.take(compressed)
	require.NotNil(t, got)
	require.Equal(t, recs, *got)
	require.Nil(t, s.take(compressed), "taken once")
	s.drop(compressed) // after take: nothing
	require.Zero(t, s.size())

	s.lend(compressed, &[]byte{})
	s.drop(compressed)
	require.Zero(t, s.size())
	require.Nil(t, s.take(compressed), "dropped")
	require.Nil(t, s.take(nil))
}
