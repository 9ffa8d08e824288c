package logx

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/logx-dev/logx/internal/store"
	"github.com/logx-dev/logx/internal/wire"
	"github.com/stretchr/testify/require"
)

// Benchmarks. Run them on a quiet machine:
//
//	go test -run '^$' -bench . -benchtime 200000x -count 5 .
//
// Each reports entries/s; the cluster benchmarks count an entry once it is
// in the files of all three nodes, with the Raft log fsynced (raft-wal syncs
// every append). BenchmarkBaselineSlogFile is what a non-replicated logger
// costs on the same machine: compare the two in one run.

// Knobs for comparing settings, e.g. -args -bench.checkpoint 1h.
var (
	benchCheckpoint   = flag.Duration("bench.checkpoint", 0, "Config.CheckpointInterval for cluster benchmarks (0: default)")
	benchBatchEntries = flag.Int("bench.batch-entries", 0, "Config.MaxBatchEntries for cluster benchmarks (0: default)")
	benchNoCompress   = flag.Bool("bench.no-compression", false, "set Config.DisableCompression in cluster benchmarks")
	benchVerifyLoans  = flag.Bool("bench.verify-loans", false, "check every loan of expanded records in cluster benchmarks, as the tests do")
)

// benchMsgs are 100-byte messages made of words, so that they compress
// about as well as real log text (S2: about 4x); benchMsg(i) picks one.
var benchMsgs = makeMessages(1024, 100, 1)

func benchMsg(i int64) string { return benchMsgs[i%int64(len(benchMsgs))] }

// makeMessages returns n messages of size bytes built from a fixed
// vocabulary, chosen by a generator seeded with seed.
func makeMessages(n, size int, seed int64) []string {
	words := strings.Fields(`the a user request server failed retry connection timeout database
		query cache miss hit session token expired refresh account created deleted updated
		payment order shipment warehouse inventory latency slow upstream downstream handler
		worker queue job scheduled completed started stopped error warning disk memory cpu
		network packet dropped received sent bytes file opened closed for from with after
		before while id region zone tenant customer invoice checkout cart item price
		discount coupon login logout password reset email sms notification delivered
		bounced rate limit exceeded throttled backoff circuit breaker open half healthy`)
	r := rand.New(rand.NewSource(seed))
	msgs := make([]string, n)
	for i := range msgs {
		var b strings.Builder
		for b.Len() < size {
			b.WriteString(words[r.Intn(len(words))])
			b.WriteByte(' ')
		}
		msgs[i] = b.String()[:size]
	}
	return msgs
}

// BenchmarkBaselineSlogFile is log/slog's JSON handler writing to a
// buffered local file, from as many goroutines as there are CPUs.
func BenchmarkBaselineSlogFile(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "slog.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 256<<10)
	log := slog.New(slog.NewJSONHandler(w, nil))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		i := int64(0)
		for pb.Next() {
			log.Info(benchMsg(i), "i", i)
			i++
		}
	})
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "entries/s")
}

// benchCluster starts a quiet 3-node cluster for a benchmark.
func benchCluster(b *testing.B) *testCluster {
	b.Helper()
	b.StopTimer()
	// The tests check every loan of expanded records against the decoder
	// (expand_test.go); production does not, and with it on a benchmark
	// would time a second decode of every batch the leader applies.
	if !*benchVerifyLoans {
		verifyLoans = false
		b.Cleanup(func() { verifyLoans = true })
	}
	c := newTestCluster(b, 3, func(cfg *Config) {
		cfg.ElectionTimeout = time.Second
		cfg.LogOutput = quietWriter{}
		cfg.CheckpointInterval = *benchCheckpoint
		cfg.DisableCompression = *benchNoCompress
		if *benchBatchEntries > 0 {
			cfg.MaxBatchEntries = *benchBatchEntries
			cfg.MaxBatchBytes = max(cfg.MaxBatchBytes, 1<<20, *benchBatchEntries*256)
		}
	})
	b.StartTimer()
	return c
}

// quietWriter drops diagnostics (elections at start-up) from benchmark output.
type quietWriter struct{}

func (quietWriter) Write(p []byte) (int, error) { return len(p), nil }

// waitAllWritten waits until every node's files hold n more entries than
// before.
func (c *testCluster) waitAllWritten(b *testing.B, base, n uint64) {
	b.Helper()
	c.flushAll()
	c.waitSameSeq(base + n)
}

// BenchmarkClusterAsync: fire-and-forget Info from 4 goroutines on each of
// the 3 nodes; the clock stops when every node's files hold every entry.
func BenchmarkClusterAsync(b *testing.B) {
	c := benchCluster(b)
	const perNode = 4
	base := c.nodes[0].Stats().Seq
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for _, lx := range c.nodes {
		for g := 0; g < perNode; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
					lx.Info(benchMsg(i), "i", i)
				}
			}()
		}
	}
	wg.Wait()
	c.waitAllWritten(b, base, uint64(b.N))
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "entries/s")
	var recs, sent uint64
	for _, lx := range c.nodes {
		st := lx.Stats()
		recs, sent = recs+st.RecordBytes, sent+st.BatchBytes
	}
	if sent > 0 {
		b.ReportMetric(float64(recs)/float64(sent), "compression")
	}
}

// BenchmarkClusterAppend64: 64 concurrent callers of Append, spread over the
// 3 nodes; each call returns after commit. Reports throughput and the
// median and 99th percentile latency of one Append.
func BenchmarkClusterAppend64(b *testing.B) {
	benchAppend(b, 64)
}

// BenchmarkClusterAppend16: 16 concurrent callers of Append over 3 nodes.
func BenchmarkClusterAppend16(b *testing.B) {
	benchAppend(b, 16)
}

// BenchmarkClusterAppend4: 4 concurrent callers of Append over 3 nodes
// (two on one node).
func BenchmarkClusterAppend4(b *testing.B) {
	benchAppend(b, 4)
}

// BenchmarkClusterAppend1: one caller of Append on a follower.
func BenchmarkClusterAppend1(b *testing.B) {
	benchAppend(b, 1)
}

func benchAppend(b *testing.B, callers int) {
	c := benchCluster(b)
	base := c.nodes[0].Stats().Seq
	batchesBefore := c.batches()
	ctx := context.Background()
	var next atomic.Int64
	lat := make([][]time.Duration, callers)
	start := time.Now()
	var wg sync.WaitGroup
	for g := 0; g < callers; g++ {
		lx := c.nodes[(g+1)%3] // with one caller, a follower or the leader
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				t0 := time.Now()
				if _, err := lx.Append(ctx, LevelInfo, benchMsg(i), "i", i); err != nil {
					b.Error(err)
					return
				}
				lat[g] = append(lat[g], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	c.waitAllWritten(b, base, uint64(b.N))
	reportLatencies(b, slices.Concat(lat...))
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "entries/s")
	// How many callers' entries share a batch (a Raft entry): callerWait.
	if batches := c.batches() - batchesBefore; batches > 0 {
		b.ReportMetric(float64(b.N)/float64(batches), "entries/batch")
	}
}

// batches is the number of batches the nodes have sent (Stats.Batches).
func (c *testCluster) batches() (n uint64) {
	for _, lx := range c.nodes {
		n += lx.Stats().Batches
	}
	return n
}

var benchCatchUpBytes = flag.Int64("bench.catchup-bytes", 1<<30, "log size for BenchmarkCatchUp")

// BenchmarkCatchUp: node 3's directory is wiped while the others hold
// -bench.catchup-bytes of log (default 1 GiB) and have compacted their Raft
// logs; it restarts and copies the files from a peer. Reports MB/s from the
// restart until node 3 holds every byte.
func BenchmarkCatchUp(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		c := newTestClusterSeams(b, 3, func(cfg *Config, sm *seams) {
			cfg.LogOutput = quietWriter{}
			if os.Getenv("LOGX_BENCH_VERBOSE") != "" {
				cfg.LogOutput = os.Stderr
			}
			cfg.ElectionTimeout = time.Second
			cfg.TrailingLogs = 64
			cfg.SnapshotThreshold = 1 << 30
			sm.walSegmentSize = 8 << 20
		})
		c.stop(2)
		msg := strings.Repeat("x", 1000)
		per := int(*benchCatchUpBytes/1100) / 2
		var wg sync.WaitGroup
		for _, lx := range c.nodes[:2] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; k < per; k++ {
					lx.Info(msg, "k", k)
				}
			}()
		}
		wg.Wait()
		c.flushAll()
		c.snapshotAll()
		require.NoError(b, os.RemoveAll(c.cfgs[2].Dir))
		want := c.nodes[0].Stats().Seq
		b.StartTimer()
		start := time.Now()
		c.start(2)
		c.waitSameSeq(want)
		el := time.Since(start)
		b.StopTimer()
		st := c.nodes[2].Stats()
		files, err := c.nodes[0].Files()
		require.NoError(b, err)
		c.closeAll()
		// Baseline in the same run: copy the same files with fsync.
		cpStart := time.Now()
		cpBytes := copyFilesSynced(b, c.cfgs[0].Dir, files, b.TempDir())
		cpEl := time.Since(cpStart)
		// The copy itself; el adds Raft noticing the node is back (its
		// replication backoff after a long outage) and the replay after.
		mbs := float64(st.FetchedBytes) / 1e6 / st.CatchUpDuration.Seconds()
		cpMBs := float64(cpBytes) / 1e6 / cpEl.Seconds()
		b.ReportMetric(mbs, "MB/s")
		b.ReportMetric(cpMBs, "cp-MB/s")
		b.ReportMetric(mbs/cpMBs, "ratio")
		b.ReportMetric(float64(st.FetchedBytes)/(1<<20), "MiB")
		b.ReportMetric(el.Seconds(), "s-to-identical")
	}
}

// copyFilesSynced copies the named files from src to dst, fsyncing each, and
// returns the bytes copied: what the disk allows for a plain local copy.
func copyFilesSynced(tb testing.TB, src string, files []string, dst string) int64 {
	var total int64
	for _, name := range files {
		in, err := os.Open(filepath.Join(src, name))
		require.NoError(tb, err)
		out, err := os.Create(filepath.Join(dst, name))
		require.NoError(tb, err)
		n, err := io.Copy(out, in)
		require.NoError(tb, err)
		require.NoError(tb, out.Sync())
		require.NoError(tb, out.Close())
		require.NoError(tb, in.Close())
		total += n
	}
	return total
}

var benchGrepBytes = flag.Int64("bench.grep-bytes", 1<<30, "log size for BenchmarkGrep")

// BenchmarkGrep searches a page-cached log of -bench.grep-bytes (1 GiB by
// default, in 64 MiB files written by the real apply path) for a rare
// substring with Grep, and, in the same run, with `grep -F` over the same
// files. It reports both rates and their ratio (>1: Grep is faster).
func BenchmarkGrep(b *testing.B) {
	benchGrepAgainst(b, Query{Contains: "needle-in-the-haystack"}, "-c", func(out string) int {
		total := 0
		for _, f := range strings.Fields(out) {
			n, err := strconv.Atoi(f)
			require.NoError(b, err)
			total += n
		}
		return total
	})
}

// BenchmarkGrepContext is BenchmarkGrep with two lines of context on each
// side of a match (Before and After 2) against grep -F -C2, which print
// the same lines.
func BenchmarkGrepContext(b *testing.B) {
	benchGrepAgainst(b, Query{Contains: "needle-in-the-haystack", Before: 2, After: 2}, "-C2", func(out string) int {
		lines := 0
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if l != "--" {
				lines++
			}
		}
		return lines
	})
}

// benchGrepAgainst times Grep with q and grep -F with flag over the same
// files, in the same run, and checks that both find the same lines
// (lines counts what grep printed).
func benchGrepAgainst(b *testing.B, q Query, flag string, lines func(out string) int) {
	dir, paths, written := grepFixture(b, false)
	ourDur, grepDur := timeGrepAgainst(b, dir, q, append([]string{"grep", "-F", flag, "-h", q.Contains}, paths...),
		func(out string, want int) {
			require.Equal(b, want, lines(out), "grep %s found other lines", flag)
		})
	reportGrep(b, written, ourDur, grepDur, "grep-F-MB/s")
}

// timeGrepAgainst times Grep with q over dir's log and the command cmd, in
// turns, b.N times each; check gets the command's output and the number of
// lines Grep found.
func timeGrepAgainst(b *testing.B, dir string, q Query, cmd []string, check func(out string, want int)) (ourDur, theirDur time.Duration) {
	count := func() int {
		n := 0
		require.NoError(b, Grep(context.Background(), dir, "app.log", q, func(Line) error { n++; return nil }))
		return n
	}
	want := count() // also warms the page cache
	require.Positive(b, want)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		require.Equal(b, want, count())
		ourDur += time.Since(start)
		start = time.Now()
		out, err := exec.Command(cmd[0], cmd[1:]...).Output()
		theirDur += time.Since(start)
		require.NoError(b, err)
		check(string(out), want)
	}
	return ourDur, theirDur
}

// BenchmarkGrepCompressed compresses the rotated files of BenchmarkGrep's
// log as Config.Compress does (one goroutine), and reports the disk
// saved and the compression speed; then times, in the same run, Grep
// over the compressed files against zstd -dcf | grep -F -c over the
// same files (the active file is plain for both), checking that both
// count the same lines. MB/s are of the plain bytes.
//
// Two logs: BenchmarkGrep's, whose lines differ only in their time and
// one number, and a varied one whose lines carry random request ids,
// users, paths, statuses and durations, as a service's often do.
func BenchmarkGrepCompressed(b *testing.B) {
	zstd, err := exec.LookPath("zstd")
	if err != nil {
		b.Skip("no zstd tool here")
	}
	b.Run("repetitive", func(b *testing.B) { benchGrepCompressed(b, zstd, false) })
	b.Run("varied", func(b *testing.B) { benchGrepCompressed(b, zstd, true) })
}

func benchGrepCompressed(b *testing.B, zstd string, varied bool) {
	dir, _, written := grepFixture(b, varied)
	st, _, err := readState(dir)
	require.NoError(b, err)
	var mu sync.Mutex
	var plain, saved int64
	start := time.Now()
	for _, fs := range st.Rotated {
		n, err := store.CompressFile(dir, fs, &mu, func() error { return nil })
		require.NoError(b, err)
		plain += fs.Size
		saved += n
	}
	compressDur := time.Since(start)
	names, err := LogFiles(dir, "app.log")
	require.NoError(b, err)
	paths := make([]string, len(names))
	for i, n := range names {
		paths[i] = filepath.Join(dir, n)
	}
	q := Query{Contains: "needle-in-the-haystack"}
	pipeline := fmt.Sprintf("%s -dcf -q %s | grep -F -c %s", zstd, strings.Join(paths, " "), q.Contains)
	ourDur, theirDur := timeGrepAgainst(b, dir, q, []string{"sh", "-c", pipeline}, func(out string, want int) {
		require.Equal(b, strconv.Itoa(want), strings.TrimSpace(out))
	})
	reportGrep(b, written, ourDur, theirDur, "zstd|grep-MB/s")
	b.ReportMetric(float64(plain)/float64(plain-saved), "compression-ratio")
	b.ReportMetric(float64(plain)/1e6/compressDur.Seconds(), "compress-MB/s")
}

func reportGrep(b *testing.B, written int64, ourDur, grepDur time.Duration, unit string) {
	mb := float64(written) / 1e6 * float64(b.N)
	b.ReportMetric(mb/ourDur.Seconds(), "MB/s")
	b.ReportMetric(mb/grepDur.Seconds(), unit)
	b.ReportMetric(grepDur.Seconds()/ourDur.Seconds(), "ratio")
}

// grepFixture writes the benchmark's log (-bench.grepbytes of it) through
// the real apply path: lines of about 200 bytes, one in 100,000 holding
// the needle, in 64 MiB files. Varied lines carry random request ids,
// users, paths, statuses and durations (seeded), and four messages.
func grepFixture(b *testing.B, varied bool) (dir string, paths []string, written int64) {
	dir = b.TempDir()
	f, err := newFSM(fsmConfig{dir: dir, file: "app.log", policy: filePolicy{rotation: store.Rotation{MaxSize: 64 << 20}}, format: FormatText, stateInterval: -1, logf: func(string, ...any) {}})
	require.NoError(b, err)
	msg := strings.Repeat("abcdefghij", 10)
	rng := rand.New(rand.NewSource(1))
	msgs := []string{"request served", "cache miss", "upstream slow", "session renewed"}
	routes := []string{"items", "users", "orders", "carts", "search"}
	for i := 1; written < *benchGrepBytes; i++ {
		batch := wire.AppendHeader(nil, wire.Header{Producer: 1, FirstPSeq: uint64((i-1)*1000 + 1), Count: 1000})
		for k := 0; k < 1000; k++ {
			t := time.Unix(1764000000, 0).Add(time.Duration(i*1000+k) * time.Millisecond)
			m := msg
			if varied {
				m = msgs[rng.Intn(len(msgs))]
			}
			if (i*1000+k)%100000 == 0 {
				m = "needle-in-the-haystack " + m
			}
			body := appendBodyStart(nil, FormatText, t, LevelInfo, "n1", "app/main.go:42", m)
			if varied {
				status := []int{200, 200, 200, 200, 201, 304, 404, 500}[rng.Intn(8)]
				body = appendAttrText(body, "", slog.String("request_id", fmt.Sprintf("%016x", rng.Uint64())))
				body = appendAttrText(body, "", slog.Int("user", rng.Intn(1_000_000)))
				body = appendAttrText(body, "", slog.String("path", fmt.Sprintf("/api/v1/%s/%d", routes[rng.Intn(len(routes))], rng.Intn(100_000))))
				body = appendAttrText(body, "", slog.Int("status", status))
				body = appendAttrText(body, "", slog.Duration("took", time.Duration(rng.Intn(900_000))*time.Microsecond))
			} else {
				body = appendAttrText(body, "", slog.Int("user", k))
			}
			batch = wire.AppendRecord(batch, LevelInfo, t.UnixNano(), body)
		}
		f.ApplyBatch([]*raft.Log{{Index: uint64(i), Type: raft.LogCommand, Data: batch}})
		written = int64(f.bytes.Load())
	}
	require.NoError(b, f.close())
	names, err := LogFiles(dir, "app.log")
	require.NoError(b, err)
	paths = make([]string, len(names))
	for i, n := range names {
		paths[i] = filepath.Join(dir, n)
	}
	return dir, paths, written
}

// BenchmarkFsync is what one fsync of a small append costs on this disk,
// the unit a commit's latency is made of (docs/benchmarks.md): each
// iteration writes 4 KiB to a file and fsyncs it. Reports p50, p99 and p99.9.
func BenchmarkFsync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "fsync"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		t0 := time.Now()
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	reportLatencies(b, lat)
}

// reportLatencies reports the p50, p99 and p99.9 of lat, in milliseconds.
func reportLatencies(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	for _, q := range []struct {
		name string
		per  int
	}{{"p50-ms", 500}, {"p99-ms", 990}, {"p99.9-ms", 999}} {
		b.ReportMetric(float64(lat[len(lat)*q.per/1000].Microseconds())/1000, q.name)
	}
}

// BenchmarkFsyncConcurrent is BenchmarkFsync with three writers at once,
// each appending 200 bytes to its own file and fsyncing it, as the three
// nodes of a cluster on one disk do (b.N appends each):
//
//	go test -run '^$' -bench FsyncConcurrent -benchtime 3000x -count 3 .
func BenchmarkFsyncConcurrent(b *testing.B) {
	const writers = 3
	dir := b.TempDir()
	lats := make([][]time.Duration, writers)
	var wg sync.WaitGroup
	b.ResetTimer()
	for w := range writers {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("fsync%d", w)))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		wg.Go(func() {
			buf := make([]byte, 200)
			for range b.N {
				t0 := time.Now()
				if _, err := f.Write(buf); err != nil {
					b.Error(err)
					return
				}
				if err := f.Sync(); err != nil {
					b.Error(err)
					return
				}
				lats[w] = append(lats[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	reportLatencies(b, slices.Concat(lats...))
}
