package logx

import (
	"flag"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

var failoverRuns = flag.Int("failover.runs", 0, "TestFailoverTime: leaders to SIGKILL (0 skips the test)")

// TestFailoverTime measures how long a 3-process cluster is without a
// leader after its leader is SIGKILLed: from the kill until another node's
// status says it leads (status files are rewritten every 10 ms). It is a
// measurement, run by hand, not a timed assertion:
//
//	go test -run TestFailoverTime -failover.runs 10 -v .
func TestFailoverTime(t *testing.T) {
	if *failoverRuns <= 0 {
		t.Skip("a measurement: -failover.runs N")
	}
	c := newProcCluster(t, 3, 0, 0)
	for i := range 3 {
		c.start(i, 0)
	}
	var took []time.Duration
	for range *failoverRuns {
		l := c.waitLeader(-1)
		for i := range 3 { // every node up and following before the kill
			if i != l {
				c.waitStatus(i, "following", func(s procStatus) bool { return s.state == "Follower" })
			}
		}
		t0 := time.Now()
		c.kill(l)
		c.waitLeader(l)
		took = append(took, time.Since(t0))
		c.start(l, 0)
		c.waitStatus(l, "following", func(s procStatus) bool { return s.state == "Follower" })
	}
	slices.Sort(took)
	t.Logf("failover (SIGKILL of the leader until another node leads), %d runs: min %v, median %v, max %v",
		len(took), took[0].Round(time.Millisecond), took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
}

var idleFailoverRuns = flag.Int("failover.idle", 0, "TestIdleFailoverTime: leaders to cut off per stream (0 skips the test)")

// TestIdleFailoverTime measures what idle streams' stretched timeouts
// (idle.go) cost: how long a stream is without a leader after its leader
// is cut off (a blackhole: connections stay open, nothing arrives), for
// the default stream, whose followers keep their timeouts when it is idle,
// and for another idle stream, in the same run, with the default
// ElectionTimeout (1 s). Both are idle when the cut comes. From the cut until
// another node says it leads that stream. A measurement, run by hand, not
// a timed assertion:
//
//	go test -run TestIdleFailoverTime -failover.idle 5 -v .
func TestIdleFailoverTime(t *testing.T) {
	if *idleFailoverRuns <= 0 {
		t.Skip("a measurement: -failover.idle N")
	}
	fn := newFaultNet(t, 3)
	c := newFaultCluster(t, fn, func(cfg *Config) {
		cfg.ElectionTimeout = time.Second
		cfg.Streams = []StreamConfig{{Name: "audit"}}
	})
	stream := func(i int, name string) *Stream {
		s, err := c.nodes[i].Stream(name)
		require.NoError(t, err)
		return s
	}
	// leaderOf is the index of the node that leads name, and whether
	// every other node follows it.
	leaderOf := func(name string, not int) (int, bool) {
		l, followers := -1, 0
		for i := range 3 {
			switch stream(i, name).raft.State() {
			case raft.Leader:
				if i != not {
					l = i
				}
			case raft.Follower:
				followers++
			}
		}
		return l, l >= 0 && followers == 2
	}
	took := map[string][]time.Duration{}
	for run := range *idleFailoverRuns {
		for _, name := range []string{DefaultStream, "audit"} {
			var l int
			require.True(t, waitFor(2*time.Minute, func() bool {
				var settled bool
				l, settled = leaderOf(name, -1)
				if !settled {
					return false
				}
				for i := range 3 {
					if !stream(i, "audit").idle.Load() || !stream(i, DefaultStream).idle.Load() {
						return false // both idle: the cut hits a leader at its idle pace
					}
				}
				return true
			}), "run %d, %s: no settled leader with both streams idle on every node", run, name)
			fn.isolate(l, cutBlackhole)
			t0 := time.Now()
			require.True(t, waitFor(time.Minute, func() bool { n, _ := leaderOf(name, l); return n >= 0 }),
				"run %d, %s: no new leader", run, name)
			took[name] = append(took[name], time.Since(t0))
			fn.heal()
		}
	}
	for _, name := range []string{DefaultStream, "audit (idle)"} {
		d := took[strings.Fields(name)[0]]
		slices.Sort(d)
		t.Logf("%s: leader cut off until another node leads, %d runs: min %v, median %v, max %v",
			name, len(d), d[0].Round(time.Millisecond), d[len(d)/2].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
	}
}
