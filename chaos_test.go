//go:build chaos

package logx

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// chaosNodes is the cluster sizes TestChaosLong runs (only that test uses it).
var chaosNodes = flag.String("chaos.nodes", "3,5", "cluster sizes TestChaosLong runs, comma-separated")

func init() { chaosTagged = true }

// TestChaosLong is the long run of the fault-injection harness
// (chaos_harness_test.go): a 3-node and a 5-node cluster, each injecting
// faults for -chaos.duration (default 2m):
//
//	go test -tags chaos -run ChaosLong -chaos.duration 5m -timeout 30m .
//	go test -tags chaos -run ChaosLong -chaos.nodes 5 -chaos.seed 42 -v .
//
// If the test's deadline (-timeout) leaves too little time, the duration
// shrinks to fit, and the log says so.
func TestChaosLong(t *testing.T) {
	var sizes []int
	for _, f := range strings.Split(*chaosNodes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 3 || n > 9 {
			t.Fatalf("-chaos.nodes: %q is not a cluster size from 3 to 9", f)
		}
		sizes = append(sizes, n)
	}
	for k, n := range sizes {
		t.Run(fmt.Sprintf("nodes=%d", n), func(t *testing.T) {
			o := chaosOpts{nodes: n, duration: 2 * time.Minute, maxFaults: 1 << 30, writers: 2, interval: 25 * time.Millisecond}
			if n > 3 {
				o.interval = 40 * time.Millisecond // the same load, about, on more processes
			}
			o = o.withFlags()
			// Leave each remaining run two minutes to start, settle and check.
			if dl, ok := t.Deadline(); ok {
				left := len(sizes) - k
				if fit := (time.Until(dl) - time.Duration(left)*2*time.Minute) / time.Duration(left); fit < o.duration {
					t.Logf("-timeout leaves %v for faults (wanted %v)", fit.Round(time.Second), o.duration)
					o.duration = max(fit, 10*time.Second)
				}
			}
			// One clock-skew held longer than the log clock may lag, where the run
			// has room for it.
			o.longSkew = o.duration >= 2*time.Minute
			runChaos(t, o)
		})
	}
}
