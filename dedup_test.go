package logx

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
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

var yearProducers = flag.Int("dedup.producers", 100_000, "producers TestDedupYear runs through (1M for the long run)")

func batchResult(t *testing.T, f *fsm, l *raft.Log) applyResult {
	t.Helper()
	return f.ApplyBatch([]*raft.Log{l})[0].(applyResult)
}

// TestSpoofedProducer: a batch sent under another producer's id cannot make
// that producer's next entry look like a repeat and be answered nil while
// it is never written. Without TLS the owner's next batch is refused with
// an error (never a made-up sequence number); with TLS the spoofed batch
// is refused, since the id belongs to the certificate that first used it.
func TestSpoofedProducer(t *testing.T) {
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	victim := uint64(0xabc)
	spoof := func(b *logBuilder) *raft.Log {
		data := wire.AppendHeader(nil, wire.Header{Producer: victim, FirstPSeq: 1 << 40, Count: 1})
		data = wire.AppendRecord(data, LevelInfo, now.UnixNano(), appendBodyStart(nil, FormatText, now, LevelInfo, "evil", "", "spoofed"))
		return b.add(raft.LogCommand, data)
	}

	t.Run("without TLS", func(t *testing.T) {
		f := openTestFSM(t, t.TempDir())
		defer f.close()
		var b logBuilder
		r := batchResult(t, f, b.batch(victim, 2, now, "genuine"))
		require.NoError(t, r.err)
		require.Equal(t, uint64(1), r.firstSeq)
		spoof(&b)
		f.ApplyBatch(b.logs[1:])
		r = batchResult(t, f, b.batch(victim, 1, now, "next genuine"))
		require.Error(t, r.err, "the owner learns its entry was not written")
		require.True(t, isProducerConflict(r.err))
		require.Zero(t, r.firstSeq)
		// A repeat of the owner's first batch is not answered with
		// arithmetic on someone else's numbers either.
		rep := b.add(raft.LogCommand, b.logs[0].Data)
		r = batchResult(t, f, rep)
		require.Error(t, r.err)
		require.Zero(t, r.firstSeq)
	})

	t.Run("its next numbers first", func(t *testing.T) {
		// Another sender (a fork of the owner, a hostile peer with its id,
		// or its certificate) takes the owner's next numbers first: the
		// owner's own next batch, the same numbers, is not a repeat of it
		// (it was answered nil and never written).
		f := openTestFSM(t, t.TempDir())
		defer f.close()
		var b logBuilder
		require.NoError(t, batchResult(t, f, b.batch(victim, 2, now, "genuine")).err)
		forged := b.batch(victim, 1, now, "forged")
		r := batchResult(t, f, forged)
		require.NoError(t, r.err)
		require.Equal(t, uint64(3), r.firstSeq)
		b.pseq[victim]--
		r = batchResult(t, f, b.batch(victim, 1, now, "next genuine"))
		require.Error(t, r.err, "the owner learns its entry was not written")
		require.True(t, isProducerConflict(r.err))
		require.Zero(t, r.firstSeq)
		require.Zero(t, f.dups.Load())
		// The same batch again is still a repeat.
		r = batchResult(t, f, b.add(raft.LogCommand, forged.Data))
		require.NoError(t, r.err)
		require.Equal(t, uint64(3), r.firstSeq)
		require.Equal(t, uint64(1), f.dups.Load())
		require.Equal(t, uint64(3), f.st.Seq)
	})

	t.Run("with TLS", func(t *testing.T) {
		f := openTestFSM(t, t.TempDir())
		defer f.close()
		owner, evil := []byte("0123456789abcdef"), []byte("fedcba9876543210")
		var b logBuilder
		l := b.batch(victim, 2, now, "genuine")
		l.Extensions = owner
		require.NoError(t, batchResult(t, f, l).err)
		s := spoof(&b)
		s.Extensions = evil
		r := batchResult(t, f, s)
		require.ErrorContains(t, r.err, "another certificate")
		l = b.batch(victim, 1, now, "next genuine")
		l.Extensions = owner
		r = batchResult(t, f, l)
		require.NoError(t, r.err)
		require.Equal(t, uint64(3), r.firstSeq)
		require.Equal(t, uint64(3), f.seq.Load(), "the spoofed entry was not written")
	})
}

// TestRepeatAnswer: a repeat of the last batch is written once and
// answered with the sequence number its first copy got; a batch that
// overlaps the last or goes back is refused; a batch with no entries is
// refused and adds no producer.
func TestRepeatAnswer(t *testing.T) {
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	f := openTestFSM(t, t.TempDir())
	defer f.close()
	var b logBuilder
	b.batch(9, 3, now, "other")
	first := b.batch(1, 4, now, "a")
	f.ApplyBatch(b.logs)
	rep := b.add(raft.LogCommand, first.Data)
	r := batchResult(t, f, rep)
	require.NoError(t, r.err)
	require.Equal(t, uint64(4), r.firstSeq, "the first copy's number")
	require.Equal(t, uint64(7), f.seq.Load())

	overlap := wire.AppendHeader(nil, wire.Header{Producer: 1, FirstPSeq: 3, Count: 3})
	for k := 0; k < 3; k++ {
		overlap = wire.AppendRecord(overlap, LevelInfo, now.UnixNano(), appendBodyStart(nil, FormatText, now, LevelInfo, "n1", "", "x"))
	}
	r = batchResult(t, f, b.add(raft.LogCommand, overlap))
	require.True(t, isProducerConflict(r.err), "%v", r.err)

	empty := wire.AppendHeader(nil, wire.Header{Producer: 77, FirstPSeq: 1, Count: 0})
	r = batchResult(t, f, b.add(raft.LogCommand, empty))
	require.Error(t, r.err)
	require.NotContains(t, f.st.Producers, uint64(77))
	require.Equal(t, uint64(7), f.seq.Load())
}

// TestDedupYear: a year of producers (a cron job's Client every 30 s, and
// restarts), with the default dedup window: the table holds only those of
// the last window, so state.json, the snapshot and a restart stay small and
// fast. Then a flood of producers within one window: the table stays
// within maxProducers.
//
//	go test -run TestDedupYear -dedup.producers 1000000 -v .
func TestDedupYear(t *testing.T) {
	dir := t.TempDir()
	f, err := newFSM(fsmConfig{dir: dir, file: "app.log", policy: filePolicy{rotation: store.Rotation{MaxSize: 64 << 20}, dedupWindow: defaultDedupWindow}, format: FormatText, stateInterval: -1, logf: t.Logf})
	require.NoError(t, err)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	step := 30 * time.Second
	n := *yearProducers
	var b logBuilder
	b.voters("a")
	began := time.Now()
	maxTable := 0
	for i := 0; i < n; i++ {
		at := start.Add(time.Duration(i) * step)
		b.clock("a", at)
		b.batch(uint64(i)+1, 1, at, "cron")
		if len(b.logs) >= 64 || i == n-1 {
			f.ApplyBatch(b.take())
			maxTable = max(maxTable, len(f.st.Producers))
			b.pseq = nil
		}
		if i%(n/4) == 0 {
			require.NoError(t, f.persist()) // restarts checkpoint too
		}
	}
	applyTook := time.Since(began)
	window := int(defaultDedupWindow / step)
	require.LessOrEqual(t, maxTable, window*9/8+64, "the table holds about one window of producers")

	began = time.Now()
	require.NoError(t, f.persist())
	persistTook := time.Since(began)
	fi, err := os.Stat(filepath.Join(dir, stateFile))
	require.NoError(t, err)
	require.Less(t, fi.Size(), int64(64<<10), "state.json")
	snap, err := f.Snapshot()
	require.NoError(t, err)
	mb, err := json.Marshal(snap)
	require.NoError(t, err)
	require.Less(t, len(mb), 64<<10, "snapshot manifest")
	require.NoError(t, f.close())
	began = time.Now()
	f, err = newFSM(fsmConfig{dir: dir, file: "app.log", policy: filePolicy{rotation: store.Rotation{MaxSize: 64 << 20}, dedupWindow: defaultDedupWindow}, format: FormatText, stateInterval: -1, logf: t.Logf})
	require.NoError(t, err)
	restartTook := time.Since(began)
	t.Logf("%d producers over %v of log time: apply %v, largest table %d, state.json %d bytes, checkpoint %v, manifest %d bytes, restart %v",
		n, time.Duration(n)*step, applyTook.Round(time.Millisecond), maxTable, fi.Size(), persistTook.Round(time.Microsecond), len(mb), restartTook.Round(time.Microsecond))

	// A flood: twice maxProducers new producers in one second of log time.
	at := start.Add(time.Duration(n) * step)
	b.clock("a", at)
	for i := 0; i < 2*maxProducers; i++ {
		b.batch(uint64(1<<40+i), 1, at, "flood")
		if len(b.logs) >= 64 {
			f.ApplyBatch(b.take())
			require.LessOrEqual(t, len(f.st.Producers), maxProducers)
		}
	}
	f.ApplyBatch(b.take())
	require.NoError(t, f.persist())
	fi, err = os.Stat(filepath.Join(dir, stateFile))
	require.NoError(t, err)
	t.Logf("flood of %d producers: table %d, state.json %d bytes", 2*maxProducers, len(f.st.Producers), fi.Size())
	require.Less(t, fi.Size(), int64(maxProducers*160), "state.json stays bounded")
	require.NoError(t, f.close())
}

// TestDedupWindowGivesUp: a batch that may have reached a leader is not
// tried again later than half the dedup window after the first try's
// start (after that the cluster may have forgotten its producer, and a
// repeat would be written twice): a node whose leader's disk hangs
// (commits hang) and a Client whose leader takes batches and never
// answers fail it with ErrOutcomeUnknown long before their callers'
// contexts end, and no try of theirs starts later. (The half window ran
// from the end of the first try: a node tried three times where two fit,
// and a Client sent its last try 1.64 s after its first.)
func TestDedupWindowGivesUp(t *testing.T) {
	var hang atomic.Int32 // 1 + the index of the node whose disk hangs
	release := make(chan struct{})
	c := newTestClusterSeams(t, 3, func(cfg *Config, sm *seams) {
		cfg.ForwardTimeout = time.Second
		cfg.DedupWindow = 3 * time.Second
		i := int32(cfg.NodeID[1] - '1')
		sm.diskFault = func() error {
			if hang.Load() == i+1 {
				<-release // the leader's apply hangs: its answers never come
			}
			return nil
		}
	})
	c.logAppend("before", 5)
	leader := c.leaderIndex()
	follower := (leader + 1) % 3
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hang.Store(int32(leader) + 1)
	began := time.Now()
	forwarded := c.nodes[follower].Stats().Forwarded
	_, err := c.nodes[follower].Append(ctx, LevelInfo, "unanswered")
	took := time.Since(began)
	hang.Store(0)
	close(release) // before any check: a failed one must not leave Close waiting for the disk
	require.ErrorIs(t, err, ErrOutcomeUnknown)
	require.NoError(t, ctx.Err(), "gave up before the caller's context ended")
	t.Logf("Append gave up after %v, %d tries", took.Round(time.Millisecond), c.nodes[follower].Stats().Forwarded-forwarded)
	// Tries of ForwardTimeout (1 s) start at 0 and 1 s; the next would
	// start at 2 s, past half the window (1.5 s): given up then.
	require.Less(t, took, 2500*time.Millisecond, "tried again past half the window")
	require.GreaterOrEqual(t, c.nodes[follower].Stats().Forwarded-forwarded, uint64(2), "the second try fits")

	// A leader that reads batches and never answers; it notes when each
	// arrives.
	var mu sync.Mutex
	var arrived []time.Time
	batches := func(p byte) bool { return p == wire.ProtoForward } // not the Client's status asks
	addr := fakeForwarderOf(t, batches, func(net.Conn) error {
		mu.Lock()
		arrived = append(arrived, time.Now())
		mu.Unlock()
		return nil // no answer
	})
	cl := &Client{addrs: []string{addr}, node: "cl", timeout: 500 * time.Millisecond, producer: newProducerID(), dedupWindow: 3 * time.Second}
	defer cl.Close()
	began = time.Now()
	_, err = cl.Send(ctx, []ClientEntry{{Level: LevelInfo, Msg: "unanswered"}})
	require.ErrorIs(t, err, ErrOutcomeUnknown)
	require.NoError(t, ctx.Err())
	require.Less(t, time.Since(began), 10*time.Second)
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, arrived)
	last := arrived[len(arrived)-1].Sub(arrived[0])
	t.Logf("Client.Send gave up after %v, %d tries, the last %v after the first", time.Since(began).Round(time.Millisecond), len(arrived), last.Round(time.Millisecond))
	// Tries of 0.5 s start 20, 40, 80 ms... after the one before ends: at
	// 0, 0.52 and 1.06 s; the next would start at 1.64 s, past half the
	// window (1.5 s) (it was sent, before).
	require.LessOrEqual(t, last, 1500*time.Millisecond, "a try that starts past half the window after the first")
	require.GreaterOrEqual(t, len(arrived), 3, "the tries that fit")
}

// TestSpoofedProducerCluster: without TLS anyone may append, but a batch
// sent under a node's producer id does not cost that node its next entry:
// refused as a producer conflict on its first attempt, the node sends it
// again under a new id, and Append returns the sequence number it got.
func TestSpoofedProducerCluster(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.logAppend("before", 3)
	leader := c.leaderIndex()
	victim := c.nodes[(leader+1)%3]
	victimID := victim.producer // set at New; read before the conflict
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := dialProto(ctx, c.cfgs[leader].Addr, "", wire.ProtoForward, 5*time.Second, nil)
	require.NoError(t, err)
	defer conn.Close()
	now := time.Now()
	batch := wire.AppendHeader(nil, wire.Header{Producer: victimID, FirstPSeq: 1 << 40, Count: 1})
	batch = wire.AppendRecord(batch, LevelInfo, now.UnixNano(), appendBodyStart(nil, FormatText, now, LevelInfo, "evil", "", "spoofed"))
	_, err = conn.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(batch))), batch...))
	require.NoError(t, err)
	resp, err := wire.ReadFrame(bufio.NewReader(conn), nil, 1<<20)
	require.NoError(t, err)
	require.Equal(t, wire.StatusOK, resp[0], "without TLS the batch is taken: %s", resp[wire.AnswerHeader:])

	seq, err := victim.Append(ctx, LevelInfo, "after the spoof")
	require.NoError(t, err)
	c.flushAll()
	total := c.waitSameSeq(11)
	require.Equal(t, uint64(11), total)
	lines := readLines(t, c.dirs()[0], "app.log")
	require.Contains(t, string(lines[seq-1]), "after the spoof", "the sequence number Append returned")
	n := 0
	for _, l := range lines {
		if strings.Contains(string(l), "after the spoof") {
			n++
		}
	}
	require.Equal(t, 1, n)
	requireIdentical(t, c.dirs(), "app.log")
}

// TestDedupWindowUnknownSettings: a node whose Config leaves DedupWindow
// zero takes the cluster's; until it knows the cluster's settings (a new
// node, before it is added and caught up) its senders use the shortest
// window a cluster may have, not the 10-minute default, which could
// outlast a shorter cluster window and let a repeat arrive after the
// cluster forgot the producer.
func TestDedupWindowUnknownSettings(t *testing.T) {
	t.Parallel()
	const window = 40 * time.Second
	c := newTestClusterSeams(t, 3, func(cfg *Config, sm *seams) {
		cfg.DedupWindow = window
		cfg.Streams = []StreamConfig{{Name: "audit"}}
		cfg.MaxSize = 16 << 10
		cfg.TrailingLogs = 8
		cfg.SnapshotThreshold = 1 << 20 // snapshots only when the test asks
		sm.walSegmentSize = 16 << 10    // so that compaction drops segments
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err := c.nodes[0].Append(ctx, LevelInfo, "settings recorded")
	require.NoError(t, err)
	require.Equal(t, window, c.nodes[0].Stats().DedupWindow)

	// The new node's catch-up copies files, and the test holds its first
	// fetch: meanwhile it has the snapshot's settings, not yet the log's.
	c.logAppend("files", 100)
	c.snapshotAll()
	fetching, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	n := c.addJoinerWith(func(cfg *Config, sm *seams) {
		cfg.DedupWindow = 0
		sm.fetchHook = func(ctx context.Context) error {
			once.Do(func() { close(fetching) })
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	})
	require.Equal(t, minDedupWindow, c.nodes[n].Stats().DedupWindow, "settings unknown")
	added := make(chan error, 1)
	go func() { added <- c.nodes[0].AddNode(ctx, c.cfgs[n].Addr) }()
	select {
	case <-fetching:
	case <-time.After(30 * time.Second):
		t.Fatal("the new node did not catch up by copying files")
	}
	require.True(t, c.nodes[n].Stats().CatchingUp)
	require.Equal(t, window, c.nodes[n].Stats().DedupWindow, "during the catch-up: the snapshot's window")
	close(release)
	require.NoError(t, <-added)
	require.True(t, waitFor(30*time.Second, func() bool { return c.nodes[n].Stats().DedupWindow == window }),
		"the added node took %v, not the cluster's window", c.nodes[n].Stats().DedupWindow)
	// Its other streams take theirs too (they used the node's default,
	// and refused to open on a cluster whose window was another).
	var audit *Stream
	require.True(t, waitFor(30*time.Second, func() bool {
		audit, _ = c.nodes[n].Stream("audit")
		return audit != nil && audit.Stats().DedupWindow == window
	}), "the added node's audit stream")
}

// TestEvictionCounted: a producer forgotten by the table's bound within
// the window of its last batch is counted and logged, also when it was
// silent for more than half the window. A try started just before half
// the window may arrive until the window ends (tryBy): before, only those
// silent for less than half were counted, and this one's repeat would
// have been written twice without a word.
func TestEvictionCounted(t *testing.T) {
	w := time.Duration(defaultDedupWindow)
	f, err := newFSM(fsmConfig{dir: t.TempDir(), file: "app.log", policy: filePolicy{rotation: store.Rotation{MaxSize: 64 << 20}, dedupWindow: w}, format: FormatText, stateInterval: -1, logf: func(string, ...any) {}})
	require.NoError(t, err)
	defer f.close()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var b logBuilder
	b.voters("a")
	flood := func(at time.Time, from, n int) {
		b.clock("a", at)
		for i := range n {
			b.batch(uint64(from+i), 1, at, "x")
			if len(b.logs) >= 64 {
				f.ApplyBatch(b.take())
			}
		}
		f.ApplyBatch(b.take())
	}
	flood(t0, 1, 1) // the producer whose try is still on its way
	flood(t0.Add(time.Second), 2, maxProducers/2)
	require.Zero(t, f.evicted.Load())
	flood(t0.Add(w/2+5*time.Second), 1<<40, maxProducers/2+1)
	_, kept := f.st.Producers[1]
	require.False(t, kept, "the oldest goes first")
	require.Positive(t, f.evicted.Load(), "forgotten within its window, and not counted")
}

// TestTransferRefusalNotSent: while a leader hands its leadership over,
// Raft refuses every command before it proposes it
// (ErrLeadershipTransferInProgress), for up to an ElectionTimeout. Such a
// try sent nothing, so the batch is retried as unsent for as long as it
// takes, on the leader and from a follower, and succeeds once the
// transfer ends. (Both counted it as a try that may have been written: a
// transfer longer than half the dedup window failed their batches with
// ErrOutcomeUnknown.) The target of the transfer is a black hole at a
// stopped node's address: it takes connections and never answers, so
// each transfer lasts the whole ElectionTimeout.
func TestTransferRefusalNotSent(t *testing.T) {
	const et = 1500 * time.Millisecond
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.ElectionTimeout = et
		cfg.ForwardTimeout = 400 * time.Millisecond
		cfg.DedupWindow = time.Second // tries that may have been written stop after 0.5 s
	})
	c.logAppend("before", 3)
	l := c.leaderIndex()
	require.GreaterOrEqual(t, l, 0)
	f, target := (l+1)%3, (l+2)%3
	addr := c.cfgs[target].Addr
	c.stop(target)
	fakePeer(t, addr, func(conn net.Conn) { _, _ = io.Copy(io.Discard, conn) })

	leader, follower := c.nodes[l], c.nodes[f]
	retries := func() (uint64, uint64) { return leader.Stats().Retries, follower.Stats().Retries }
	lBefore, fBefore := retries()
	long := false
	for round := 0; round < 5; round++ {
		began := time.Now()
		tf := leader.raft.LeadershipTransferToServer(raft.ServerID(addr), raft.ServerAddress(addr))
		done := make(chan time.Duration, 1)
		var terr error
		go func() { terr = tf.Error(); done <- time.Since(began) }()
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for _, lx := range []*Logx{leader, follower} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; ; k++ {
					select {
					case <-stop:
						return
					default:
					}
					_, err := lx.Append(context.Background(), LevelInfo, "during a transfer", "round", round, "k", k)
					if err != nil {
						t.Errorf("Append on %s during a transfer: %v", lx.cfg.NodeID, err)
						return
					}
				}
			}()
		}
		took := <-done
		close(stop)
		wg.Wait()
		require.Equal(t, l, c.leaderIndex(), "the leader changed: the black hole cannot lead")
		t.Logf("round %d: the transfer lasted %v (%v)", round, took.Round(time.Millisecond), terr)
		if took >= et*9/10 {
			long = true
		}
		lr, fr := retries()
		if long && lr > lBefore && fr > fBefore {
			break
		}
	}
	lr, fr := retries()
	require.True(t, long, "no transfer lasted the ElectionTimeout")
	require.Greater(t, lr, lBefore, "the leader's producer never met the transfer")
	require.Greater(t, fr, fBefore, "the follower's producer never met the transfer")
}
