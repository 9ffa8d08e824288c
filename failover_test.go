package logx

import (
	"flag"
	"slices"
	"testing"
	"time"
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
