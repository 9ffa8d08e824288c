package logx

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestForwardFollowsNewLeader: when the leader goes silent (a blackhole
// partition: connections stay open, nothing arrives), the followers elect
// another leader, and a follower's Append moves on to it instead of waiting
// for ForwardTimeout on the old one. The entry is written once.
func TestForwardFollowsNewLeader(t *testing.T) {
	fn := newFaultNet(t, 3)
	base := t.TempDir()
	c := &testCluster{t: t}
	for i := 0; i < 3; i++ {
		cfg := testConfig(t, i, fn.addrs(), filepath.Join(base, fmt.Sprint(i)))
		cfg.listenAddr, cfg.dialFrom = fn.listenAddr(i), fn.from(i)
		cfg.ForwardTimeout = time.Minute // so that waiting it out cannot pass
		c.cfgs = append(c.cfgs, cfg)
		c.nodes = append(c.nodes, nil)
		c.start(i)
	}
	t.Cleanup(func() { fn.heal(); c.closeAll() })
	c.waitReady()
	l := c.leaderIndex()
	f := (l + 1) % 3
	ctx := context.Background()
	_, err := c.nodes[f].Append(ctx, LevelInfo, "before", "k", 0)
	require.NoError(t, err)

	fn.isolate(l, cutBlackhole)
	start := time.Now()
	actx, cancel := context.WithTimeout(ctx, 50*time.Second)
	defer cancel()
	_, err = c.nodes[f].Append(actx, LevelInfo, "during", "k", 1)
	require.NoError(t, err)
	took := time.Since(start)
	require.Less(t, took, 30*time.Second, "the follower waited out ForwardTimeout on the silent leader")
	t.Logf("Append during the partition took %v", took)

	fn.heal()
	c.flushAll()
	seq := c.waitSameSeq(2)
	requireIdentical(t, c.dirs(), "app.log")
	requireUnique(t, readLines(t, c.cfgs[0].Dir, "app.log"), "msg", "k")
	require.Equal(t, uint64(2), seq)
}
