package logx

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
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
	t.Parallel()
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

	// Stop one follower: the leader sees it failing. (Whichever node
	// leads by then: on a loaded machine the two left may hold an
	// election, which starts the new leader's watch afresh.)
	c.stop(f2)
	require.True(t, waitFor(20*time.Second, func() bool {
		lead := c.leaderIndex()
		if lead < 0 {
			return false
		}
		for _, p := range c.nodes[lead].Stats().Peers {
			if p.Addr == c.cfgs[f2].Addr && p.Failing {
				l, f1 = lead, 3-lead-f2
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

// TestAlarmLag: a follower whose apply stalls (its log files frozen, as by
// a hung disk, while its Raft log still works) raises the lag alarm while
// the others go on, and clears it once apply resumes.
func TestAlarmLag(t *testing.T) {
	t.Parallel()
	var logs [3]alarmLog
	hooks := []*powerHooks{{}, {}, {}} // the files' lock only
	i := 0
	c := newTestClusterSeams(t, 3, func(cfg *Config, sm *seams) {
		cfg.OnAlarm = logs[i].add
		cfg.AlarmLag = 5
		sm.powerCut = hooks[i]
		i++
	})
	l := c.leaderIndex()
	f := (l + 1) % 3
	hooks[f].mu.Lock()
	thaw := hooks[f].mu.Unlock
	thawed := false
	defer func() {
		if !thawed {
			thaw()
		}
	}()
	// Commit through the other two while f cannot apply.
	for k := 0; k < 20 && !logs[f].has(AlarmLag, false); k++ {
		_, err := c.nodes[l].Append(context.Background(), LevelInfo, "while stalled", "k", k)
		require.NoError(t, err)
	}
	require.True(t, waitFor(10*time.Second, func() bool { return logs[f].has(AlarmLag, false) }), "no lag alarm")
	require.Greater(t, c.nodes[f].Stats().Lag, uint64(5))
	thaw()
	thawed = true
	require.True(t, waitFor(10*time.Second, func() bool { return logs[f].has(AlarmLag, true) }), "the lag alarm did not clear")
	require.False(t, logs[l].has(AlarmLag, false))
}

// The alarm monitor looks every tenth of AlarmNoLeader, between 100 ms and
// a second: a stream with OnAlarm set wakes once a second when idle, not
// ten times.
func TestAlarmCheckEvery(t *testing.T) {
	for _, tc := range []struct{ noLeader, want time.Duration }{
		{10 * time.Second, time.Second}, // the default
		{time.Minute, time.Second},
		{5 * time.Second, 500 * time.Millisecond},
		{500 * time.Millisecond, 100 * time.Millisecond},
		{time.Millisecond, 100 * time.Millisecond},
	} {
		require.Equal(t, tc.want, alarmCheckEvery(tc.noLeader), "AlarmNoLeader %v", tc.noLeader)
	}
}

// TestPeerWatchForgetsChangedPeer: a peer removed while its heartbeats
// failed, and added again under the same address, is not reported failing
// for good: hashicorp/raft reports no resumed heartbeats for a peer whose
// new heartbeats never failed.
func TestPeerWatchForgetsChangedPeer(t *testing.T) {
	for _, removed := range []bool{true, false} {
		p := peerWatch{failing: map[raft.ServerID]failure{}}
		p.observe(raft.Observation{Data: raft.FailedHeartbeatObservation{PeerID: "d", LastContact: time.Now()}})
		p.observe(raft.Observation{Data: raft.FailedHeartbeatObservation{PeerID: "e", LastContact: time.Now()}})
		require.Len(t, p.failing, 2)
		p.observe(raft.Observation{Data: raft.PeerObservation{Removed: removed, Peer: raft.Server{ID: "d", Address: "d"}}})
		require.NotContains(t, p.failing, raft.ServerID("d"), "removed %v", removed)
		require.Contains(t, p.failing, raft.ServerID("e"))
	}
}
