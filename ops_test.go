package logx

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// alarmLog collects alarms.
type alarmLog struct {
	mu     sync.Mutex
	alarms []Alarm
}

func (a *alarmLog) add(al Alarm) {
	a.mu.Lock()
	a.alarms = append(a.alarms, al)
	a.mu.Unlock()
}

func (a *alarmLog) has(k AlarmKind, cleared bool) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, al := range a.alarms {
		if al.Kind == k && al.Cleared == cleared {
			return true
		}
	}
	return false
}

// TestAlarmsAndPeers: losing the leader raises no-leader on the follower
// left alone, and it clears when a leader is back; the leader reports a
// stopped peer as failing; Stats shows lag and last contact.
func TestAlarmsAndPeers(t *testing.T) {
	var logs [3]alarmLog
	i := 0
	c := newTestCluster(t, 3, func(cfg *Config) {
		k := i
		cfg.OnAlarm = logs[k].add
		cfg.AlarmNoLeader = 500 * time.Millisecond
		i++
	})
	c.logAppend("a", 10)
	l := c.leaderIndex()
	f1, f2 := (l+1)%3, (l+2)%3
	require.True(t, waitFor(10*time.Second, func() bool { return c.nodes[f1].Stats().Lag == 0 }))
	st := c.nodes[f1].Stats()
	require.GreaterOrEqual(t, st.LastContact, time.Duration(0))
	require.Len(t, st.Peers, 2)

	// Stop one follower: the leader sees it failing.
	c.stop(f2)
	require.True(t, waitFor(10*time.Second, func() bool {
		for _, p := range c.nodes[l].Stats().Peers {
			if p.Addr == c.cfgs[f2].Addr && p.Failing {
				return true
			}
		}
		return false
	}), "the leader does not report the stopped peer")

	// Stop the leader too: the last follower has no leader, and says so.
	c.stop(l)
	require.True(t, waitFor(10*time.Second, func() bool { return logs[f1].has(AlarmNoLeader, false) }))
	c.start(l)
	c.start(f2)
	c.waitReady()
	require.True(t, waitFor(10*time.Second, func() bool { return logs[f1].has(AlarmNoLeader, true) }))
	require.False(t, logs[f1].has(AlarmWriteError, false))
}
