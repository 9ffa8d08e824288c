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
// them again; the followers decode. The files come out the same on every
// node (and verifyLoans checks every loan against the decoder), and no
// loan outlives its commit.
func TestExpandedBatches(t *testing.T) {
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
		require.Zero(t, lx.expanded.size(), "%s: a loan outlived its commit", lx.cfg.NodeID)
		require.LessOrEqual(t, lx.expanded.used.Load(), lx.expanded.lent.Load())
	}
	if leader.raft.State() == raft.Leader && leader.raft.CurrentTerm() == term {
		// The same leader throughout: apply read every loan.
		require.Equal(t, fwdLent, fwdUsed, "forwarded batches decoded again")
		require.Equal(t, e.lent.Load(), e.used.Load(), "batches decoded again")
		for _, f := range followers {
			require.Zero(t, f.expanded.lent.Load(), "%s lent as a follower", f.cfg.NodeID)
		}
	}
	t.Logf("leader: %d batches lent to apply (%d forwarded), %d used", e.lent.Load(), fwdLent, e.used.Load())
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
