package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logx-dev/logx"
)

const (
	msgSeed     = 1    // the messages are the same in every run
	msgPoolSize = 2048 // distinct messages per cell, used in turn
	logFile     = "bench.log"
	warmAppends = 10 // Appends per node in the warm-up, after its Info calls
)

// freeAddrs returns n addresses on 127.0.0.1 that were free a moment ago.
func freeAddrs(n int) ([]string, error) {
	var addrs []string
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, nil
}

// nodeConfig is node i's configuration: defaults apart from the node's
// identity and directory, the file name and a quiet LogOutput.
func nodeConfig(addrs []string, dir string, i, streams int) logx.Config {
	cfg := logx.Config{
		NodeID:    fmt.Sprintf("n%d", i+1),
		Addr:      addrs[i],
		Peers:     addrs,
		Dir:       nodeDir(dir, i),
		File:      logFile,
		LogOutput: io.Discard,
	}
	for k := 1; k < streams; k++ {
		cfg.Streams = append(cfg.Streams, logx.StreamConfig{Name: fmt.Sprintf("s%d", k)})
	}
	return cfg
}

// streamsOf returns lx's streams, the default one first.
func streamsOf(lx *logx.Logx) []*logx.Stream {
	var out []*logx.Stream
	for _, name := range lx.Streams() {
		if s, err := lx.Stream(name); err == nil {
			out = append(out, s)
		}
	}
	return out
}

// infoTo logs entry i with Info on one of streams, round-robin.
func infoTo(streams []*logx.Stream, msgs []string, i int64) error {
	streams[i%int64(len(streams))].Info(msgs[i%int64(len(msgs))], "i", i)
	return nil
}

// flushAll flushes every stream of lx.
func flushAll(ctx context.Context, lx *logx.Logx) error {
	for _, s := range streamsOf(lx) {
		if err := s.Flush(ctx); err != nil {
			return err
		}
	}
	return nil
}

// waitIdle waits until every stream of lx has gone idle (Stats.Idle: about
// ten ElectionTimeouts after its last entry).
func waitIdle(ctx context.Context, lx *logx.Logx) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		idle := true
		for _, s := range streamsOf(lx) {
			idle = idle && s.Stats().Idle
		}
		if idle {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the streams to go idle: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// batchCounts returns the entries lx's producers have committed and the
// batches they have sent, over all its streams.
func batchCounts(lx *logx.Logx) (entries, batches uint64) {
	for _, s := range streamsOf(lx) {
		st := s.Stats()
		entries += st.Committed
		batches += st.Batches
	}
	return entries, batches
}

// sumBatches is batchCounts over the nodes.
func sumBatches(nodes []*logx.Logx) (entries, batches uint64) {
	for _, lx := range nodes {
		e, b := batchCounts(lx)
		entries, batches = entries+e, batches+b
	}
	return entries, batches
}

func nodeDir(dir string, i int) string { return filepath.Join(dir, fmt.Sprintf("n%d", i+1)) }

// logBytes is the total size of the log files (*.log) in a node's Dir.
func logBytes(nodeDir string) int64 {
	names, _ := filepath.Glob(filepath.Join(nodeDir, "*.log"))
	more, _ := filepath.Glob(filepath.Join(nodeDir, "streams", "*", "*.log"))
	names = append(names, more...)
	var n int64
	for _, name := range names {
		if fi, err := os.Stat(name); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// waitSeq waits until lx's files hold entry seq.
func waitSeq(ctx context.Context, lx *logx.Logx, seq uint64) error {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	total := func() uint64 {
		var n uint64
		for _, s := range streamsOf(lx) {
			n += s.Stats().Seq
		}
		return n
	}
	for {
		if total() >= seq {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s holds %d of %d entries (all streams): %w", lx.Stats().NodeID, total(), seq, ctx.Err())
		case <-t.C:
		}
	}
}

// warmupNode logs n entries with Info and a few with Append, and flushes.
func warmupNode(ctx context.Context, lx *logx.Logx, msgs []string, n int) error {
	for i := 0; i < n; i++ {
		lx.Info(msgs[i%len(msgs)], "i", i)
	}
	for i := 0; i < warmAppends; i++ {
		if _, err := lx.Append(ctx, logx.LevelInfo, msgs[i%len(msgs)], "i", i); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	return lx.Flush(ctx)
}

// stopAfter returns a flag that is set after d, and a function that
// releases the timer.
func stopAfter(d time.Duration) (*atomic.Bool, func() bool) {
	var stop atomic.Bool
	t := time.AfterFunc(d, func() { stop.Store(true) })
	return &stop, t.Stop
}

// drive calls fn from n goroutines (fn's g is the goroutine's number).
// Each takes entry numbers from next until they pass limit, stop is set or
// fn fails, and with timed records every call's latency. drive returns the
// calls that succeeded, the latencies and the errors.
func drive(n int, next *atomic.Int64, limit int64, stop *atomic.Bool, timed bool, fn func(g int, i int64) error) (int64, hist, error) {
	hs := make([]hist, n)
	counts := make([]int64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for g := 0; g < n; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				i := next.Add(1)
				if i > limit {
					return
				}
				var t0 time.Time
				if timed {
					t0 = time.Now()
				}
				if err := fn(g, i); err != nil {
					errs[g] = err
					return
				}
				if timed {
					hs[g].record(time.Since(t0))
				}
				counts[g]++
			}
		}()
	}
	wg.Wait()
	var total int64
	var h hist
	for g := range hs {
		total += counts[g]
		h.merge(&hs[g])
	}
	return total, h, errors.Join(errs...)
}

// appendTo commits entry i with Append.
func appendTo(ctx context.Context, lx *logx.Logx, msgs []string, i int64) error {
	_, err := lx.Append(ctx, logx.LevelInfo, msgs[i%int64(len(msgs))], "i", i)
	return err
}

// closeNodes flushes every node, so that no queue waits for a commit,
// then closes the followers and the leader last.
func closeNodes(nodes []*logx.Logx) error {
	if len(nodes) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, lx := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = lx.Flush(ctx)
		}()
	}
	wg.Wait()
	order := slices.Clone(nodes)
	slices.SortStableFunc(order, func(a, b *logx.Logx) int {
		return cmp.Compare(leaderRank(a), leaderRank(b))
	})
	for _, lx := range order {
		errs = append(errs, lx.Close())
	}
	return errors.Join(errs...)
}

func leaderRank(lx *logx.Logx) int {
	if lx.Stats().State == "Leader" {
		return 1
	}
	return 0
}

// cellPlace makes a cell's temporary directory, which the caller removes,
// and picks three free addresses on 127.0.0.1.
func cellPlace() (dir string, addrs []string, err error) {
	if dir, err = os.MkdirTemp("", "logx-bench-cell-"); err != nil {
		return "", nil, err
	}
	if addrs, err = freeAddrs(3); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return dir, addrs, nil
}

// runLogxInproc measures one cell with the three nodes in this process.
func runLogxInproc(ctx context.Context, o *options, c *cell) (res runResult, err error) {
	dir, addrs, err := cellPlace()
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	var nodes []*logx.Logx
	defer func() {
		if cerr := closeNodes(nodes); err == nil && cerr != nil {
			err = fmt.Errorf("closing: %w", cerr)
		}
	}()
	for i := 0; i < 3; i++ {
		lx, err := logx.New(nodeConfig(addrs, dir, i, c.Streams))
		if err != nil {
			return res, fmt.Errorf("starting node %d: %w", i+1, err)
		}
		nodes = append(nodes, lx)
	}
	msgs := messages(msgSeed, msgPoolSize, c.Size)

	// Start-up and warm-up.
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i, lx := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = lx.WaitReady(ctx); errs[i] == nil {
				errs[i] = warmupNode(ctx, lx, msgs, o.warmup)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	base := uint64(3 * (o.warmup + warmAppends))
	for _, lx := range nodes {
		if err := waitSeq(ctx, lx, base); err != nil {
			return res, err
		}
	}
	follower := nodes[1]
	for _, lx := range nodes {
		if lx.Stats().State == "Follower" {
			follower = lx
			break
		}
	}

	if c.Workload == "idle" {
		for _, lx := range nodes {
			if err := waitIdle(ctx, lx); err != nil {
				return res, err
			}
		}
		return idleInproc(ctx, o, c, dir)
	}

	stopProfile, err := startProfile(o.profile, profileName("inproc", c.Workload, c.Size, c.Callers, c.Streams, -1), c.Workload == "idle")
	if err != nil {
		return res, err
	}
	defer stopProfile() // on an error return: the profile as far as it got
	resetPeakRSS()
	file0 := logBytes(nodeDir(dir, 0))
	entries0, batches0 := sumBatches(nodes)
	mark := markCPU()
	var next atomic.Int64
	var total int64
	var h hist
	stop, release := stopAfter(o.duration)
	defer release()
	start := time.Now()
	var end time.Time
	var cpu time.Duration
	var cpuOK bool
	switch c.Workload {
	case "async":
		limit := int64(o.maxEntries)
		counts := make([]int64, 3)
		for i, lx := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				streams := streamsOf(lx)
				counts[i], _, _ = drive(c.Callers, &next, limit, stop, false, func(_ int, k int64) error { return infoTo(streams, msgs, k) })
				errs[i] = flushAll(ctx, lx)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return res, err
		}
		total = counts[0] + counts[1] + counts[2]
		for _, lx := range nodes {
			if err := waitSeq(ctx, lx, base+uint64(total)); err != nil {
				return res, err
			}
		}
		end = time.Now()
		cpu, _, cpuOK = mark.since()
		if err := stopProfile(); err != nil {
			return res, err
		}
	case "append":
		var err error
		total, h, err = drive(c.Callers, &next, int64(o.appendMax()), stop, true, func(g int, i int64) error {
			lx := nodes[g%3]
			if c.Callers == 1 {
				lx = follower
			}
			return appendTo(ctx, lx, msgs, i)
		})
		end = time.Now()
		cpu, _, cpuOK = mark.since()
		if err != nil {
			return res, err
		}
		for _, lx := range nodes {
			if err := waitSeq(ctx, lx, base+uint64(total)); err != nil {
				return res, err
			}
		}
		// The profile ends, as in procs mode, once every node has applied
		// every entry.
		if err := stopProfile(); err != nil {
			return res, err
		}
	default:
		return res, fmt.Errorf("unknown workload %q", c.Workload)
	}
	res.finish(total, end.Sub(start), logBytes(nodeDir(dir, 0))-file0)
	entries1, batches1 := sumBatches(nodes)
	res.setBatches(entries1-entries0, batches1-batches0)
	res.setLatency(&h)
	res.setProcessRSS()
	if cpuOK {
		res.setCPU(cpu, "process")
	}

	// Allocations on the caller's path, on the live cluster.
	msg := msgs[0]
	switch {
	case c.Workload == "async":
		a := testing.AllocsPerRun(o.allocRuns, func() { follower.Info(msg, "i", 7) })
		res.AllocsPerCall = &a
	case c.Workload == "append" && c.Callers == 1:
		var aerr error
		a := testing.AllocsPerRun(o.allocRuns, func() {
			if _, err := follower.Append(ctx, logx.LevelInfo, msg, "i", 7); err != nil && aerr == nil {
				aerr = err
			}
		})
		if aerr != nil {
			return res, fmt.Errorf("measuring allocations: %w", aerr)
		}
		res.AllocsPerCall = &a
	}
	return res, nil
}

// idleInproc measures the CPU the settled, ready cluster in this process
// uses without traffic: it waits o.idleSettle(), then measures for
// -idle-duration.
func idleInproc(ctx context.Context, o *options, c *cell, dir string) (res runResult, err error) {
	if err := sleepCtx(ctx, o.idleSettle()); err != nil {
		return res, err
	}
	stopProfile, err := startProfile(o.profile, profileName("inproc", c.Workload, c.Size, c.Callers, c.Streams, -1), c.Workload == "idle")
	if err != nil {
		return res, err
	}
	defer stopProfile() // on an error return: the profile as far as it got
	resetPeakRSS()
	file0 := logBytes(nodeDir(dir, 0))
	mark := markCPU()
	if err := sleepCtx(ctx, o.idleDur); err != nil {
		return res, err
	}
	cpu, wall, ok := mark.since()
	if err := stopProfile(); err != nil {
		return res, err
	}
	res.finish(0, wall, logBytes(nodeDir(dir, 0))-file0)
	res.setProcessRSS()
	if ok {
		res.setCPU(cpu, "process")
	}
	return res, nil
}

// sleepCtx waits d, or less if ctx ends first (then it returns ctx's error).
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// childEnv is set in the environment of a procs cell's children, so that a
// test binary re-executed as a child runs main (see main_test.go).
const childEnv = "LOGX_BENCH_CHILD"
