package logx

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestEmptyNodesWaitForLeader: both followers of a 3-node cluster
// restarted on empty Dirs together, the leader up. Each asks its peers,
// finds the leader's group running and does not bootstrap, in the default
// stream and in a declared one, so neither can be elected over a log of
// its own with the other's vote (two empty nodes are a majority); they
// follow the old leader, and every entry is kept, the files identical.
// A first start, where no peer has a history, still bootstraps (every
// other test's cluster; TestBootstrapFirstStart).
func TestEmptyNodesWaitForLeader(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.Streams = []StreamConfig{{Name: "audit"}}
	})
	c.waitReady()
	lead := c.leaderIndex()
	require.GreaterOrEqual(t, lead, 0)
	c.logAppend("before", 50)
	c.waitSameSeq(150)
	var empties []int
	for i := range c.cfgs {
		if i != lead {
			empties = append(empties, i)
			c.stop(i)
			require.NoError(t, os.RemoveAll(c.cfgs[i].Dir))
		}
	}
	for _, i := range empties {
		c.start(i)
		require.True(t, c.nodes[i].bootstrapSkipped.Load(), "node %d bootstrapped the default stream", i+1)
	}
	logAndCompare(c, 150+3*10)
	require.Equal(t, lead, c.leaderIndex(), "the old leader leads: the empty nodes could not stand")
	for _, i := range empties {
		audit, err := c.nodes[i].Stream("audit")
		require.NoError(t, err)
		require.True(t, audit.bootstrapSkipped.Load(), "node %d bootstrapped audit", i+1)
	}
}

// TestBootstrapFirstStart: on a cluster's first start every node
// bootstraps unless a peer already has a history.
func TestBootstrapFirstStart(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.waitReady()
	require.False(t, c.nodes[0].bootstrapSkipped.Load(), "the first node found no peer with a history")
}
