package logx

import (
	"context"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDiskFull: when a node cannot write its files (here its disk is
// "full": every write of a log file writes half and fails with ENOSPC),
// it stops applying and says so (Stats.WriteError, the write-error alarm,
// LogOutput); the others go on, a leader hands leadership over; once the
// disk has room again the node resumes on its own and ends with the same
// files as its peers, every entry once. A follower first, then the leader.
func TestDiskFull(t *testing.T) {
	var full [3]atomic.Bool
	var mu sync.Mutex
	alarms := map[string][]Alarm{}
	c := newTestCluster(t, 3, func(cfg *Config) {
		id := cfg.NodeID
		i := int(id[1] - '1')
		cfg.diskFault = func() error {
			if full[i].Load() {
				return syscall.ENOSPC
			}
			return nil
		}
		cfg.OnAlarm = func(a Alarm) {
			mu.Lock()
			alarms[id] = append(alarms[id], a)
			mu.Unlock()
		}
	})
	c.waitReady()
	c.logAppend("before", 20)
	total := uint64(60)

	alarmed := func(id string, cleared bool) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, a := range alarms[id] {
			if a.Kind == AlarmWriteError && a.Cleared == cleared {
				return true
			}
		}
		return false
	}
	for round, role := range []string{"follower", "leader"} {
		victim := c.leaderIndex()
		if role == "follower" {
			victim = (victim + 1) % 3
		}
		id := c.cfgs[victim].NodeID
		full[victim].Store(true)
		before := c.nodes[victim].fsm.applied.Load()

		// The others keep committing. The victim's callers queue: a
		// leader's own batch waits for its apply, and Info never blocks
		// on the disk.
		var wg sync.WaitGroup
		for i, lx := range c.nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; k < 30; k++ {
					if i == victim {
						lx.Info("disk entry", "tag", role, "node", i, "k", k)
						continue
					}
					_, err := lx.Append(context.Background(), LevelInfo, "disk entry", "tag", role, "node", i, "k", k)
					require.NoError(t, err)
				}
			}()
		}
		wg.Wait()
		total += 90
		require.True(t, waitFor(20*time.Second, func() bool { return c.nodes[victim].Stats().WriteError != "" }), "%s reports the error", id)
		require.Contains(t, c.nodes[victim].Stats().WriteError, "no space left")
		require.True(t, waitFor(5*time.Second, func() bool { return alarmed(id, false) }), "%s raises the write-error alarm", id)
		require.Less(t, c.nodes[victim].fsm.applied.Load()-before, uint64(90), "%s stopped applying", id)
		if role == "leader" {
			require.True(t, waitFor(20*time.Second, func() bool { return c.leaderIndex() != victim }), "the leader hands over")
		}
		for i, lx := range c.nodes {
			if i != victim {
				require.True(t, waitFor(20*time.Second, func() bool { return lx.fsm.seq.Load() >= total-30 }), "n%d goes on", i+1)
			}
		}

		// Room again: the victim resumes by itself.
		full[victim].Store(false)
		require.True(t, waitFor(20*time.Second, func() bool { return c.nodes[victim].Stats().WriteError == "" }), "%s resumes", id)
		c.flushAll()
		require.Equal(t, total, c.waitSameSeq(total), "round %d", round)
		require.True(t, waitFor(5*time.Second, func() bool { return alarmed(id, true) }), "%s clears the alarm", id)
		require.Empty(t, c.nodes[victim].Stats().WriteError)
	}
	requireIdentical(t, c.dirs(), "app.log")
	lines := readLines(t, c.dirs()[0], "app.log")
	require.Len(t, lines, int(total))
	requireUnique(t, lines, "tag", "node", "k")
}
