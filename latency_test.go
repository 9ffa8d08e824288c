package logx

import (
	"context"
	"flag"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var (
	latencyProfile = flag.String("latency.profile", "", "TestNetworkLatency: zone (1 ms ± 0.2 ms each way), cross (10 ms ± 2 ms), or netem (none added: scripts/netem.sh); empty skips the test")
	latencyEach    = flag.Duration("latency.each", 10*time.Second, "TestNetworkLatency: how long each workload runs")
	latencyLoad    = flag.Duration("latency.load", time.Minute, "TestNetworkLatency: how long the election count runs under load")
)

// TestNetworkLatency measures a 3-node cluster whose every connection goes
// through the fault proxy, which holds each chunk back by a network's
// latency each way (a userspace stand-in for netem, which this machine's
// kernel lacks). scripts/netem.sh runs it in a network namespace whose
// loopback loses packets (nftables), and the test reports the TCP segments
// the kernel retransmitted. With the default ElectionTimeout
// (1 s) it measures Append's latency at 1, 16 and 256 callers spread over
// the nodes, async throughput, and the elections during -latency.load of
// async load: with no fault, any election is needless. A measurement, run
// by hand (docs/benchmarks.md, "Network latency"):
//
//	go test -run TestNetworkLatency -latency.profile zone -v .
func TestNetworkLatency(t *testing.T) {
	var delay, jitter time.Duration
	switch *latencyProfile {
	case "":
		t.Skip("a measurement: -latency.profile zone|cross")
	case "zone":
		delay, jitter = time.Millisecond, 200*time.Microsecond
	case "cross":
		delay, jitter = 10*time.Millisecond, 2*time.Millisecond
	case "netem":
		// scripts/netem.sh: the namespace's loopback has the delay and
		// the loss; the proxies add nothing.
	default:
		t.Fatalf("-latency.profile %q: want zone, cross or netem", *latencyProfile)
	}
	fn := newFaultNet(t, 3)
	fn.delay, fn.jitter = delay, jitter
	c := newFaultCluster(t, fn, func(cfg *Config) {
		cfg.ElectionTimeout = time.Second // the default, as users run it
		cfg.LogOutput = quietWriter{}
		// Minutes of async load write tens of GB a node: retention keeps
		// each node's files under 1 GiB, as a user's would.
		cfg.MaxSize, cfg.MaxFiles = 128<<20, 8
	})
	// The highest term among the nodes: each election raises it by one.
	terms := func() (term uint64) {
		for _, lx := range c.nodes {
			term = max(term, lx.raft.CurrentTerm())
		}
		return term
	}
	startTerms := terms()
	startOut, startRetrans := tcpSegments()

	for _, callers := range []int{1, 16, 256} {
		var lat []time.Duration
		var mu sync.Mutex
		var wg sync.WaitGroup
		end := time.Now().Add(*latencyEach)
		for k := range callers {
			lx := c.nodes[k%3]
			wg.Go(func() {
				var mine []time.Duration
				for time.Now().Before(end) {
					t0 := time.Now()
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					_, err := lx.Append(ctx, LevelInfo, "latency", "k", k)
					cancel()
					if err != nil {
						t.Error(err)
						return
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
		}
		wg.Wait()
		slices.Sort(lat)
		q := func(f float64) time.Duration {
			return lat[min(len(lat)-1, int(f*float64(len(lat))))].Round(10 * time.Microsecond)
		}
		t.Logf("%s, %d callers: Append %.0f/s, p50 %v, p99 %v", *latencyProfile, callers,
			float64(len(lat))/latencyEach.Seconds(), q(0.5), q(0.99))
	}

	// Async throughput, then the election count under async load.
	measure := func(d time.Duration) float64 {
		before := c.nodes[0].Stats().Seq
		var stop atomic.Bool
		var wg sync.WaitGroup
		for _, lx := range c.nodes {
			wg.Go(func() {
				for k := 0; !stop.Load(); k++ {
					lx.Info("async latency", "k", k)
				}
			})
		}
		time.Sleep(d) // the load's duration, not a synchronization
		stop.Store(true)
		wg.Wait()
		c.flushAll()
		return float64(c.waitSameSeq(before)-before) / d.Seconds()
	}
	t.Logf("%s: async %.0f entries/s", *latencyProfile, measure(*latencyEach))
	loadTerms := terms()
	rate := measure(*latencyLoad)
	elections := terms() - loadTerms
	t.Logf("%s: %v of async load at %.0f entries/s: %d elections (%d before, during the Append runs)",
		*latencyProfile, *latencyLoad, rate, elections, loadTerms-startTerms)
	if out, retrans := tcpSegments(); out > startOut {
		t.Logf("%s: TCP sent %d segments, retransmitted %d (%.2f %%)", *latencyProfile,
			out-startOut, retrans-startRetrans, 100*float64(retrans-startRetrans)/float64(out-startOut))
	}
	require.NotZero(t, rate)
}

// tcpSegments returns the kernel's counts of TCP segments sent and
// retransmitted in this network namespace (Linux's /proc/net/snmp; zeros
// elsewhere).
func tcpSegments() (out, retrans uint64) {
	data, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0, 0
	}
	var names []string
	for line := range strings.Lines(string(data)) {
		fields := strings.Fields(line)
		if len(fields) == 0 || fields[0] != "Tcp:" {
			continue
		}
		if names == nil {
			names = fields
			continue
		}
		for i, f := range fields {
			if i >= len(names) {
				break
			}
			v, _ := strconv.ParseUint(f, 10, 64)
			switch names[i] {
			case "OutSegs":
				out = v
			case "RetransSegs":
				retrans = v
			}
		}
	}
	return out, retrans
}
